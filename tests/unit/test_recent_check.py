"""The readiness check's memo (gateway/routes/ops.py Recent): a probe asked in a loop costs one
check a second, and concurrent askers share the one in progress."""

import asyncio

from gateway.routes.ops import Recent


async def test_concurrent_and_repeated_asks_share_one_check_per_period() -> None:
    now = [100.0]
    calls = []
    gate = asyncio.Event()

    async def check() -> bool:
        calls.append(now[0])
        await gate.wait()
        return len(calls) == 1   # up at first, down at the next check

    recent = Recent(check, seconds=1.0, clock=lambda: now[0])
    waiting = [asyncio.ensure_future(recent()) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiting) == [True] * 50
    now[0] += 0.9
    assert await recent() is True and len(calls) == 1   # within the period: remembered
    now[0] += 0.2
    assert await recent() is False and len(calls) == 2  # past it: checked again


async def test_a_check_that_fails_is_asked_again_by_the_next_caller() -> None:
    attempts = []

    async def check() -> bool:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("a bug in the check")
        return True

    recent = Recent(check)
    try:
        await recent()
    except RuntimeError:
        pass
    else:
        raise AssertionError("the failure was swallowed")
    assert await recent() is True and len(attempts) == 2
