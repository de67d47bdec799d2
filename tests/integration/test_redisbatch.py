"""Script calls batched per event loop turn: each caller gets its own answer, a reloaded
script is loaded again, and a failure reaches every caller of the batch."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as redis

from gateway.policies.batch import RedisBatcher

ECHO = "return {KEYS[1], ARGV[1]}"


class CountingBatcher(RedisBatcher):
    pipelines = 0

    async def _pipeline(self, batch: list) -> list:
        self.pipelines += 1
        return await super()._pipeline(batch)


@pytest.fixture
async def client(redis_url):
    connection = redis.Redis.from_url(redis_url)
    yield connection
    await connection.aclose()


async def test_concurrent_calls_share_a_pipeline_and_get_their_own_answers(client) -> None:
    batcher = CountingBatcher(client, timeout=2)
    echo = batcher.script(ECHO)
    assert await echo(["alone"], [0]) == [b"alone", b"0"]   # also loads the script
    batcher.pipelines = 0
    answers = await asyncio.gather(*(echo([f"k{i}"], [i]) for i in range(50)))
    assert answers == [[f"k{i}".encode(), str(i).encode()] for i in range(50)]
    # Made in one turn of the event loop: they go out together.
    assert batcher.pipelines == 1


async def test_a_flushed_script_is_loaded_again(client) -> None:
    echo = RedisBatcher(client, timeout=2).script(ECHO)
    await echo(["a"], [1])
    await client.script_flush()
    assert await echo(["b"], [2]) == [b"b", b"2"]


async def test_commands_and_scripts_go_in_one_batch(client) -> None:
    batcher = CountingBatcher(client, timeout=2)
    echo = batcher.script(ECHO)
    await echo(["warm"], [0])
    batcher.pipelines = 0
    await asyncio.gather(echo(["first"], [1]), batcher.command("SET", "rb:key", "v"),
                         echo(["third"], [3]), batcher.command("GET", "rb:key"))
    assert await batcher.command("GET", "rb:key") == b"v"
    assert batcher.pipelines == 2   # the four together, in order; then the last GET


async def test_errors_reach_the_callers(client) -> None:
    failing = RedisBatcher(client, timeout=2).script(
        "return redis.error_reply('nope ' .. KEYS[1])")
    results = await asyncio.gather(failing(["x"], []), failing(["y"], []),
                                   return_exceptions=True)
    assert [str(r) for r in results] == ["nope x", "nope y"]


async def test_a_dead_redis_fails_every_caller(redis_server) -> None:
    connection = redis.Redis.from_url(redis_server.url, socket_connect_timeout=0.2)
    echo = RedisBatcher(connection, timeout=0.5).script(ECHO)
    redis_server.stop()
    try:
        results = await asyncio.gather(*(echo(["k"], [1]) for _ in range(3)),
                                       return_exceptions=True)
        assert all(isinstance(r, Exception) for r in results)
    finally:
        redis_server.start()
        await connection.aclose()


async def test_a_later_write_rides_in_the_next_calls_pipeline(client) -> None:
    batcher = CountingBatcher(client, timeout=2, linger=10)
    echo = batcher.script(ECHO)
    await echo(["warm"], [0])
    batcher.pipelines = 0
    failures: list[BaseException] = []
    batcher.later("SET", "rb:later", "written", on_error=failures.append)
    assert await batcher.command("GET", "rb:later") == b"written"   # sent first, read after
    assert (batcher.pipelines, failures) == (1, [])


async def test_a_lone_later_write_goes_out_after_the_linger(client) -> None:
    batcher = CountingBatcher(client, timeout=2, linger=0.01)
    batcher.later("SET", "rb:lone", "v", on_error=pytest.fail)
    await asyncio.sleep(0.2)
    assert batcher.pipelines == 1
    assert await client.get("rb:lone") == b"v"


async def test_a_later_write_that_fails_is_reported(client) -> None:
    batcher = RedisBatcher(client, timeout=2, linger=0)
    await client.set("rb:list", "not a list")
    failures: list[BaseException] = []
    batcher.later("LPUSH", "rb:list", "x", on_error=failures.append)
    await asyncio.sleep(0.2)
    assert [type(f).__name__ for f in failures] == ["ResponseError"]


async def test_close_sends_what_is_queued(client) -> None:
    batcher = RedisBatcher(client, timeout=2, linger=10)
    batcher.later("SET", "rb:closing", "sent", on_error=pytest.fail)
    await batcher.close()
    assert await client.get("rb:closing") == b"sent"
