"""The Redis key layout: every script Portico runs touches the keys of one hash slot, so it runs
on a Redis Cluster too; and what should spread over the slots does."""

from redis.crc import key_slot

from gateway.policies.cache import cache_request
from gateway.policies.cache_entry import CacheRule
from gateway.policies.ratelimit import bucket_key
from services.common.invalidation import collection_generation_key, item_generation_key
from services.common.revocation import denied_key, valid_after_key
from services.user.throttle import bucket_key as login_key


def slots(*keys: str) -> set[int]:
    return {key_slot(key.encode()) for key in keys}


def lookup_keys(rule: CacheRule, path: str, params: dict[str, str],
                query: list[tuple[str, str]] | None = None) -> tuple[str, ...]:
    request = cache_request(rule, path=path, params=params, query=query or [], head=False,
                            cache_control=[], pragma=[], if_none_match=None)
    return request.read_along


def test_a_page_and_its_generation_share_a_slot() -> None:
    item = lookup_keys(CacheRule("product", id_field="id"), "/products/P001", {"id": "P001"})
    assert item[1] == item_generation_key("product", "P001")
    assert len(slots(*item)) == 1
    listing = lookup_keys(CacheRule("product"), "/products", {}, [("limit", "20")])
    assert listing[1] == collection_generation_key("product")
    assert len(slots(*listing)) == 1
    # A query long enough to be hashed keeps the tag outside the digest.
    long = lookup_keys(CacheRule("product"), "/products", {}, [("name", "x" * 400)])
    assert "sha256:" in long[0] and len(slots(*long)) == 1


def test_item_pages_spread_over_the_slots() -> None:
    rule = CacheRule("product", id_field="id")
    pages = [lookup_keys(rule, f"/products/P{i}", {"id": f"P{i}"})[0] for i in range(200)]
    assert len(slots(*pages)) > 150
    # ... and an item's generation is not in its collection's slot (no hot slot for writes).
    assert slots(item_generation_key("product", "P1")) != \
        slots(collection_generation_key("product"))


def test_a_tokens_revocation_keys_share_the_users_slot() -> None:
    assert len(slots(valid_after_key("u1"), denied_key("u1", "jti-1"),
                     denied_key("u1", "jti-2"))) == 1
    users = [valid_after_key(f"u{i}") for i in range(200)]
    assert len(slots(*users)) > 150


def test_odd_ids_still_share_their_slot() -> None:
    # A brace inside an id ends the tag early, but alike in every key made from it.
    for odd in ("a}b", "{x}", "}", "p{"):
        item = lookup_keys(CacheRule("product", id_field="id"), f"/products/{odd}", {"id": odd})
        assert len(slots(*item)) == 1
        assert len(slots(valid_after_key(odd), denied_key(odd, "j"))) == 1


def test_buckets_are_per_client_and_one_key_each() -> None:
    assert bucket_key("default", "ip:203.0.113.9") == "portico:rl:default:{ip:203.0.113.9}"
    buckets = [bucket_key("default", f"ip:198.51.100.{i}") for i in range(200)]
    assert len(slots(*buckets)) > 150
    assert login_key("a@example.com").startswith("portico:auth:login:")
