"""Cache keys, rules, entries and validators: everything of the response cache without I/O."""

import time

import pytest

from gateway.policies.cache_entry import (
    MAX_KEY_LENGTH,
    CacheRule,
    Entry,
    directives,
    etag_matches,
    make_etag,
)
from gateway.policies.cache_entry import cache_key as tagged_key
from services.common.invalidation import collection_generation_key, item_generation_key

PREFIX = "portico:cache:v1:{product}"


def cache_key(path: str, query=()) -> str:  # type: ignore[no-untyped-def]
    """The key of a list page of products (their tag is the collection's)."""
    return tagged_key(path, query, tag="product")


@pytest.mark.parametrize(("path", "query", "key"), [
    ("/products", [], "/products"),
    ("/products/", [], "/products"),
    ("/", [], "/"),
    ("/products", [("b", "2"), ("a", "1")], "/products?a=1&b=2"),
    ("/products", [("name", "red shoe")], "/products?name=red%20shoe"),
    ("/products", [("name", "a+b")], "/products?name=a%2Bb"),
    ("/products", [("name", "café")], "/products?name=caf%C3%A9"),
    ("/products", [("cursor", "")], "/products?cursor="),
    ("/products/a b", [], "/products/a%20b"),
    ("/products/P001", [], "/products/P001"),
])
def test_key_is_the_normalised_path_and_sorted_query(path, query, key):
    assert cache_key(path, query) == PREFIX + key


def test_equal_requests_share_a_key_and_different_ones_do_not():
    assert cache_key("/products/", [("b", "2"), ("a", "1")]) == \
        cache_key("/products", [("a", "1"), ("b", "2")])
    assert cache_key("/products", [("a", "1")]) != cache_key("/products", [("a", "2")])
    assert cache_key("/products", [("a", "1"), ("b", "")]) != cache_key("/products", [("a", "1")])
    # A literal '?' or '&' inside a value stays escaped, so it cannot forge another key.
    assert cache_key("/products", [("a", "1&b=2")]) != \
        cache_key("/products", [("a", "1"), ("b", "2")])


def test_a_long_request_gets_a_bounded_hashed_key():
    long_query = [(f"p{i}", f"value{i}") for i in range(200)]
    key = cache_key("/products", long_query)
    assert key.startswith(PREFIX + "sha256:")
    assert len(key) <= MAX_KEY_LENGTH
    assert key == cache_key("/products/", list(reversed(long_query)))
    assert key != cache_key("/products", [*long_query, ("x", "1")])


def test_rules_give_the_services_generation_keys():
    assert CacheRule("product", id_field="id").generation_keys({"id": "P001"}) == (
        item_generation_key("product", "P001"),)
    assert CacheRule("product").generation_keys({}) == (collection_generation_key("product"),)
    with pytest.raises(ValueError, match="kind"):
        CacheRule("")


def test_etag_is_strong_quoted_and_follows_the_body():
    tag = make_etag(b'{"id":"P001"}')
    assert tag.startswith('"') and tag.endswith('"') and not tag.startswith("W/")
    assert tag == make_etag(b'{"id":"P001"}')
    assert tag != make_etag(b'{"id":"P002"}')


@pytest.mark.parametrize(("header", "matches"), [
    ('"abc"', True),
    ('W/"abc"', True),
    ("*", True),
    (' "x", "abc" ', True),
    ('"x",W/"abc"', True),
    ('"abcd"', False),
    ('"x", "y"', False),
    ("abc", False),
    ("", False),
    ('"ab', False),
])
def test_if_none_match_uses_weak_comparison(header, matches):
    assert etag_matches(header, '"abc"') is matches


@pytest.mark.parametrize("hostile", [
    '"' + " " * 65_536 + '"',           # the input that froze the old regex for seconds
    'W/"' + "a" * 65_536,
    ", ".join(['"x"'] * 10_000),
])
def test_if_none_match_is_linear(hostile):
    started = time.process_time()
    for _ in range(20):
        assert etag_matches(hostile, '"abc"') is False
    # Not a speed figure: a quadratic parser takes minutes here, a linear one milliseconds.
    assert time.process_time() - started < 5


def test_directives_are_case_and_space_insensitive():
    assert directives(["No-Cache, max-age=0", "PRIVATE"]) == {"no-cache", "max-age=0", "private"}
    assert "no-cache" not in directives(["max-age=60"])


def test_entry_survives_a_round_trip_with_any_body():
    entry = Entry(status=200, content_type="application/json", body=b'{"a":"x\ny"}\n\x00\xff',
                  etag=make_etag(b"x"), stored_at=1712345678.25, generations=("3",))
    assert Entry.decode(entry.encode()) == entry


@pytest.mark.parametrize("raw", [
    b"", b"not json\nbody", b'{"v": 99, "status": 200}\nbody', b'{"v": 1}\nbody', b"[1]\n",
])
def test_an_unreadable_entry_decodes_to_none(raw):
    assert Entry.decode(raw) is None
