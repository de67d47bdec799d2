"""An answer the edge sends whole: made by the dispatcher, the cache or a refusal, finished by
the pipeline (its headers added) and sent once."""

from __future__ import annotations

from dataclasses import dataclass, field

Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Answer:
    """Status, headers (lower-case names, as bytes) and the whole body."""

    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        """The first value of header `name` (lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


def json_answer(body: bytes, *, status: int = 200, headers: Headers = ()) -> Answer:
    return Answer(status, [(b"content-type", b"application/json"),
                           (b"content-length", str(len(body)).encode()), *headers], body)
