"""gateway/edge/onewrite.py: an answer sent whole goes out in one write, byte for byte what
uvicorn's own cycle writes in two; anything else goes out as uvicorn sends it."""

from __future__ import annotations

import asyncio
import logging

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from gateway.edge.onewrite import MAX_JOINED_BODY, OneWriteCycle

HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"7"),
           (b"x-request-id", b"r-1"), (b"X-Frame-Options", b"DENY")]
DEFAULT = [(b"date", b"Thu, 03 Dec 2026 08:00:00 GMT")]


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def cycle(kind: type, *, method: str = "GET", keep_alive: bool = True,
          access_log: bool = False) -> tuple[RequestResponseCycle, Transport, list[str]]:
    transport, completed = Transport(), []
    made = kind(scope={"method": method, "http_version": "1.1", "type": "http",
                       "path": "/p", "raw_path": b"/p", "query_string": b"",
                       "client": ("127.0.0.1", 1)},
                transport=transport, flow=FlowControl(transport), logger=logging.getLogger(),
                access_logger=logging.getLogger(), access_log=access_log,
                default_headers=list(DEFAULT), message_event=asyncio.Event(),
                expect_100_continue=False, keep_alive=keep_alive,
                on_response=lambda: completed.append("done"))
    return made, transport, completed


async def answer(kind: type, messages: list[dict], **options) -> tuple[list[bytes], bool, list]:
    made, transport, completed = cycle(kind, **options)
    for message in messages:
        await made.send(message)
    return transport.writes, transport.closed, completed


WHOLE = [{"type": "http.response.start", "status": 200, "headers": HEADERS},
         {"type": "http.response.body", "body": b'{"a":1}'}]
CHUNKED = [{"type": "http.response.start", "status": 200,
            "headers": [(b"content-type", b"text/plain")]},
           {"type": "http.response.body", "body": b"ab", "more_body": True},
           {"type": "http.response.body", "body": b"c"}]
IN_PARTS = [{"type": "http.response.start", "status": 200, "headers": HEADERS},
            {"type": "http.response.body", "body": b'{"a"', "more_body": True},
            {"type": "http.response.body", "body": b":1}"}]


async def test_a_whole_answer_is_one_write_of_the_same_bytes() -> None:
    theirs, _, done_theirs = await answer(RequestResponseCycle, WHOLE)
    ours, closed, done_ours = await answer(OneWriteCycle, WHOLE)
    assert len(theirs) == 2 and ours == [b"".join(theirs)]
    assert ours[0].startswith(b"HTTP/1.1 200 OK\r\ndate: ")
    assert b"x-frame-options: DENY\r\n" in ours[0]  # names lower-cased, as uvicorn does
    assert (closed, done_ours, done_theirs) == (False, ["done"], ["done"])


@pytest.mark.parametrize("messages", [CHUNKED, IN_PARTS], ids=["chunked", "in parts"])
@pytest.mark.parametrize("options", [{}, {"keep_alive": False}, {"method": "HEAD"}],
                         ids=["keep-alive", "closing", "HEAD"])
async def test_every_answer_is_written_as_uvicorn_writes_it(messages, options) -> None:
    if options.get("method") == "HEAD" and messages is IN_PARTS:
        messages = [messages[0], {"type": "http.response.body", "body": b""}]
    theirs = await answer(RequestResponseCycle, messages, **options)
    ours = await answer(OneWriteCycle, messages, **options)
    assert b"".join(ours[0]) == b"".join(theirs[0])
    assert ours[1:] == theirs[1:]


async def test_a_closing_answer_in_one_write_closes_the_connection() -> None:
    theirs = await answer(RequestResponseCycle, WHOLE, keep_alive=False)
    ours = await answer(OneWriteCycle, WHOLE, keep_alive=False)
    assert ours[0] == [b"".join(theirs[0])]
    assert b"connection: close\r\n" in ours[0][0]
    assert ours[1:] == theirs[1:] == (True, ["done"])


@pytest.mark.parametrize("headers", [[(b"x-bad", b"a\r\nset-cookie: b")],
                                     [(b"x bad", b"a")], [(b"x-bad", b"a\x00")]])
async def test_a_header_uvicorn_refuses_is_refused_and_nothing_written(headers) -> None:
    for kind in (RequestResponseCycle, OneWriteCycle):
        made, transport, _ = cycle(kind)
        with pytest.raises(RuntimeError, match="Invalid HTTP header"):
            await made.send({"type": "http.response.start", "status": 200, "headers": headers})
        assert transport.writes == []


async def test_a_body_longer_or_shorter_than_its_length_is_refused() -> None:
    for body in (b'{"a":12}', b"{}"):
        made, transport, _ = cycle(OneWriteCycle)
        await made.send(WHOLE[0])
        with pytest.raises(RuntimeError, match="Content-Length"):
            await made.send({"type": "http.response.body", "body": body})


async def test_with_uvicorns_access_log_on_the_head_goes_out_as_uvicorn_sends_it() -> None:
    writes, _, _ = await answer(OneWriteCycle, WHOLE, access_log=True)
    assert len(writes) == 2


async def test_a_large_body_is_not_copied_to_join_its_head() -> None:
    body = b"x" * (MAX_JOINED_BODY + 1)
    messages = [{"type": "http.response.start", "status": 200,
                 "headers": [(b"content-length", str(len(body)).encode())]},
                {"type": "http.response.body", "body": body}]
    theirs, _, _ = await answer(RequestResponseCycle, messages)
    ours, _, done = await answer(OneWriteCycle, messages)
    assert ours == theirs and len(ours) == 2 and ours[1] == body
    assert done == ["done"]


async def test_a_slow_reader_gets_the_head_then_the_body_once_it_drains() -> None:
    """While the transport's buffer is full the body waits, as in uvicorn; the head held
    back goes out first, not later than it would have."""
    made, transport, done = cycle(OneWriteCycle)
    await made.send(WHOLE[0])
    assert transport.writes == []
    made.flow.pause_writing()
    sending = asyncio.ensure_future(made.send(WHOLE[1]))
    await asyncio.sleep(0.01)
    assert len(transport.writes) == 1 and transport.writes[0].endswith(b"\r\n\r\n")
    assert not sending.done()
    made.flow.resume_writing()
    await asyncio.wait_for(sending, 1)
    assert transport.writes[1] == b'{"a":1}' and done == ["done"]
