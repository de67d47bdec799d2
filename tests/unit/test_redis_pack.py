"""The batcher's own RESP packing writes exactly what redis-py's encoder writes."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection

from gateway.policies.resp import pack

ARGS = st.lists(st.one_of(st.binary(max_size=40), st.text(max_size=40),
                          st.integers(min_value=-(2**63), max_value=2**63),
                          st.floats(allow_nan=False, allow_infinity=False)), max_size=8)


@given(ARGS)
def test_pack_equals_redis_py(args) -> None:
    expected = b"".join(Connection().pack_command("EVALSHA", *args))
    assert pack(("EVALSHA", *args)) == expected


def test_pack_refuses_what_redis_py_would_not_write() -> None:
    with pytest.raises(TypeError):
        pack(("SET", "k", True))
