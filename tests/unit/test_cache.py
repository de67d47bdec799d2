"""Cache keys, rules, entries and validators: everything of the response cache without I/O."""

import pytest

from gateway.policies.cache import CacheRule, cache_key, generations
from gateway.policies.cache_entry import MAX_KEY_LENGTH, Entry, directives, etag_matches, make_etag
from services.common.invalidation import collection_generation_key, item_generation_key

PREFIX = "portico:cache:v1:"


@pytest.mark.parametrize(("path", "query", "key"), [
    ("/products", b"", "/products"),
    ("/products/", b"", "/products"),
    ("/", b"", "/"),
    ("/products", b"b=2&a=1", "/products?a=1&b=2"),
    ("/products", b"a=2&a=1", "/products?a=1&a=2"),
    ("/products", b"page_size=10&page_token=", "/products?page_size=10&page_token="),
    ("/products", b"q=red+shoe", "/products?q=red%20shoe"),
    ("/products", b"q=red%20shoe", "/products?q=red%20shoe"),
    ("/products", b"q=a%2Bb", "/products?q=a%2Bb"),
    ("/products", b"q=caf%C3%A9", "/products?q=caf%C3%A9"),
    ("/products/a b", b"", "/products/a%20b"),
    ("/products/P001", b"", "/products/P001"),
])
def test_key_is_the_normalised_path_and_sorted_query(path, query, key):
    assert cache_key(path, query) == PREFIX + key


def test_equal_requests_share_a_key_and_different_ones_do_not():
    assert cache_key("/products/", b"b=2&a=1") == cache_key("/products", "a=1&b=2")
    assert cache_key("/products", b"a=1") != cache_key("/products", b"a=2")
    assert cache_key("/products", b"a=1&b") != cache_key("/products", b"a=1")
    # A literal '?' or '&' inside a value stays escaped, so it cannot forge another key.
    assert cache_key("/products", b"a=1%26b%3D2") != cache_key("/products", b"a=1&b=2")


def test_a_long_request_gets_a_bounded_hashed_key():
    long_query = "&".join(f"p{i}=value{i}" for i in range(200))
    key = cache_key("/products", long_query)
    assert key.startswith(PREFIX + "sha256:")
    assert len(key) <= MAX_KEY_LENGTH
    assert key == cache_key("/products/", "&".join(reversed(long_query.split("&"))))
    assert key != cache_key("/products", long_query + "&x=1")


def test_generations_use_the_services_key_names():
    assert generations("product", "P001") == (item_generation_key("product", "P001"),)
    assert generations("product", None) == (collection_generation_key("product"),)


def test_rules_match_their_paths_only():
    collection = CacheRule(r"^/products/?$", "product")
    item = CacheRule(r"^/products/(?P<id>[^/]+)/?$", "product", "id")
    assert collection.match("/products") == (collection_generation_key("product"),)
    assert collection.match("/products/") == (collection_generation_key("product"),)
    assert collection.match("/products/P001") is None
    assert item.match("/products/P001/") == (item_generation_key("product", "P001"),)
    assert item.match("/products") is None
    assert item.match("/products/P001/reviews") is None


def test_a_rule_naming_a_missing_group_is_refused():
    with pytest.raises(ValueError, match="no group named"):
        CacheRule(r"^/products/([^/]+)$", "product", "id")
    with pytest.raises(ValueError, match="kind"):
        CacheRule(r"^/products$", "")


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
])
def test_if_none_match_uses_weak_comparison(header, matches):
    assert etag_matches(header, '"abc"') is matches


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
