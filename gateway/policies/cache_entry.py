"""What the response cache stores and how it names it: keys, rules, entries, ETags.

Pure functions and values, no I/O: the Redis side is in cache_store.py, the decisions in
cache.py.

A page's key carries the hash tag of the one generation the page follows
(services/common/invalidation.py), so on a Redis Cluster the entry and its generation are in one
slot and a lookup is one script:

    portico:cache:v1:{product:P001}/products/P001        an item page, with its item's generation
    portico:cache:v1:{product}/products?limit=20         a list page, with the collection's

Every list page of a kind thus shares one slot with the collection's generation. That slot is
read by every list request anyway (each reads the collection's generation), so keeping the
entries there adds their bytes to that node, not another node to ask; item pages, the bulk of a
catalogue's reads, spread over the slots by item.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import orjson

from services.common.invalidation import (
    PREFIX,
    collection_generation_key,
    generation_tag,
    item_generation_key,
)

KEY_PREFIX = f"{PREFIX}:cache:v1:"
# Past this length the normalised request is hashed, so a key stays bounded whatever the URL.
MAX_KEY_LENGTH = 256
_FORMAT = 1


@dataclass(frozen=True)
class CacheRule:
    """A public route whose GETs may be cached: the kind of resource it shows, and the path
    parameter holding the item id (None for a collection page)."""

    kind: str
    id_field: str | None = None

    def __post_init__(self) -> None:
        if not self.kind:
            raise ValueError("a cache rule needs the kind of resource it shows")

    def generation_keys(self, params: dict[str, str]) -> tuple[str, ...]:
        """The generation keys a page depends on. An item page shows one resource, so only
        that resource's writes change it; a list page may show any of them, so it follows the
        collection's generation, which every item write bumps as well."""
        if self.id_field is None:
            return (collection_generation_key(self.kind),)
        return (item_generation_key(self.kind, params[self.id_field]),)

    def tag(self, params: dict[str, str]) -> str:
        """The hash tag of a page's entry: that of the generation it follows."""
        if self.id_field is None:
            return generation_tag(self.kind)
        return generation_tag(self.kind, params[self.id_field])


_PLAIN_PATH = re.compile(r"[A-Za-z0-9/_.~-]*")


def cache_key(path: str, query: Iterable[tuple[str, str]] = (), *, tag: str) -> str:
    """The Redis key of a request: the hash tag of its generation (`CacheRule.tag`), its path
    without a trailing slash, then its query parameters (already validated and canonical)
    sorted by name, so that equal requests share one key."""
    normalised = path.rstrip("/") or "/"
    if not _PLAIN_PATH.fullmatch(normalised):  # a path of ids needs no escaping
        normalised = quote(normalised, safe="/:@!$&'()*+,;=-._~")
    pairs = sorted(query)
    if pairs:
        normalised += "?" + urlencode(pairs, quote_via=quote, safe="-._~")
    prefix = f"{KEY_PREFIX}{{{tag}}}"
    if len(prefix) + len(normalised) > MAX_KEY_LENGTH:
        return prefix + "sha256:" + hashlib.sha256(normalised.encode()).hexdigest()
    return prefix + normalised


def make_etag(body: bytes) -> str:
    """A strong validator: the same body always gets the same tag, on every replica."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2): `*`, or any listed tag equal
    to ours once a `W/` prefix is dropped. Linear in the header's length: the quoted tags are
    every other piece between double quotes (a tag cannot contain one)."""
    if if_none_match.strip() == "*":
        return True
    ours = etag.removeprefix("W/").strip('"')
    return ours in if_none_match.split('"')[1::2]


def directives(values: Iterable[str]) -> frozenset[str]:
    """The directives of Cache-Control (or Pragma) header values, lower-cased, `max-age=0`
    kept whole, so `"no-cache" in directives(...)` reads naturally."""
    found = set()
    for value in values:
        for part in value.split(","):
            part = part.strip().lower().replace(" ", "")
            if part:
                found.add(part.replace('"', ""))
    return frozenset(found)


# Made per request: not frozen, which would make it several times dearer to build.
@dataclass(slots=True)
class Entry:
    """A stored response and what it was filled against.

    `stored_at` is on the Redis clock (seconds), so every replica measures an entry's age on
    one clock. `generations` are the values read BEFORE the upstream call that produced it.
    """

    status: int
    content_type: str
    body: bytes
    etag: str
    stored_at: float
    generations: tuple[str, ...]

    def encode(self) -> bytes:
        """A JSON header line, then the body as is (orjson escapes newlines inside strings, so
        the first newline always ends the header)."""
        header = {"v": _FORMAT, "status": self.status, "type": self.content_type,
                  "etag": self.etag, "stored_at": self.stored_at,
                  "gens": list(self.generations)}
        return orjson.dumps(header) + b"\n" + self.body

    @classmethod
    def decode(cls, raw: bytes) -> Entry | None:
        """The entry, or None for anything this version cannot read (an old format, a
        damaged value): the caller then treats it as a miss and overwrites it."""
        header, newline, body = raw.partition(b"\n")
        try:
            fields = orjson.loads(header) if newline else None
            if not isinstance(fields, dict) or fields.get("v") != _FORMAT:
                return None
            return cls(status=int(fields["status"]), content_type=str(fields["type"]),
                       body=body, etag=str(fields["etag"]),
                       stored_at=float(fields["stored_at"]),
                       generations=tuple(str(gen) for gen in fields["gens"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
