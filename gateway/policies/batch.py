"""Redis commands and Lua scripts, batched into pipelines while Redis is busy.

Every request of a busy gateway calls Redis at least once (the rate limiter's script, often a
cache fill too). Sent one by one, each call pays for a connection from the pool, a write, a read
and a parse: about 200 µs of CPU here. The calls made while a batch is out go together as the
next pipeline (one write, one read; about 50 µs a call at 32 in flight), and each caller gets its
own answer. A lone call goes out at once, as it would without batching.

A write whose answer nobody waits for (a cache fill) is queued with `later`: it goes out in
front of the next call's pipeline, or on its own after `linger` seconds when none comes, so on a
busy gateway it costs no round trip of its own. Calls go out in the order they were made, so a
later read in this process sees the write.

Each batch is bounded by `timeout`; a call waits at most for the batch in flight and its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from gateway.policies.resp import PooledConnection, RespConnection, open_connection, pack


# Made per request: not frozen, which would make it several times dearer to build.
@dataclass(slots=True)
class _Call:
    args: tuple[Any, ...]
    script: AsyncScript | None
    future: asyncio.Future | None            # None for a `later` call
    on_error: Callable[[BaseException], None] | None = None
    on_done: Callable[[], None] | None = None

    def settle(self, result: Any) -> None:
        """Hands the call its answer, or its failure (a cancelled batch fails a waiting caller
        but is no Redis failure to tell a `later` call of)."""
        failed = isinstance(result, BaseException)
        if self.future is None:
            if failed and not isinstance(result, asyncio.CancelledError) and self.on_error:
                self.on_error(result)
            if self.on_done is not None:
                self.on_done()
        elif not self.future.done():
            if isinstance(result, asyncio.CancelledError):
                self.future.set_exception(ConnectionError("cancelled"))
            elif failed:
                self.future.set_exception(result)
            else:
                self.future.set_result(result)


class RedisBatcher:
    """`await batcher.command("SET", key, value)`, or `script = batcher.script(lua)` then
    `await script(keys, args)`: answers as Redis gives them (b"OK" for a SET: no response
    callbacks), errors as the plain client raises them."""

    def __init__(self, client: Redis, *, timeout: float, max_batch: int = 128,
                 linger: float = 0.002, name: str = "redis") -> None:
        if timeout <= 0 or max_batch < 1 or linger < 0:
            raise ValueError("timeout must be positive, max_batch at least 1, linger >= 0")
        self.name = name  # the node it talks to, on a cluster
        self._client = client
        self._timeout = timeout
        self._max_batch = max_batch
        self._linger = linger
        self._pending: list[_Call] = []
        self._sending = False
        self._timer: asyncio.TimerHandle | None = None
        self._connection: RespConnection | PooledConnection | None = None
        self._tasks: set[asyncio.Task] = set()

    def script(self, text: str):
        """A callable `(keys, args) -> answer` running the Lua `text` through the batcher."""
        script = self._client.register_script(text)

        async def run(keys: list[str], args: list[Any], *, asking: bool = False) -> Any:
            return await self._call(("EVALSHA", script.sha, len(keys), *keys, *args), script,
                                    asking=asking)

        return run

    async def command(self, *args: Any) -> Any:
        return await self._call(args, None)

    def later(self, *args: Any, on_error: Callable[[BaseException], None],
              on_done: Callable[[], None] | None = None) -> None:
        """Queues a command whose answer nobody waits for. `on_error` hears of its failure;
        `on_done` is called (at once, in the batch's own step) when it went through or failed."""
        self._pending.append(_Call(args, None, None, on_error, on_done))
        if not self._sending and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger, self._linger_over)

    async def close(self) -> None:
        """Sends what is still queued (fills written behind) and waits for batches out, at
        most a few timeouts long, then closes its connection. Call before closing the client."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeout * 4):
                while self._pending or self._sending:
                    if not self._sending:
                        self._spawn()
                    await asyncio.sleep(self._timeout / 10)
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    def _linger_over(self) -> None:
        self._timer = None
        if self._pending and not self._sending:
            self._spawn()

    async def _call(self, args: tuple[Any, ...], script: AsyncScript | None, *,
                    asking: bool = False) -> Any:
        future = asyncio.get_running_loop().create_future()
        if asking:
            # A cluster node importing a slot serves its keys only to the command right after
            # an ASKING on the same connection: both are queued together, so they go out so.
            self._pending.append(_Call(("ASKING",), None, None))
        self._pending.append(_Call(args, script, future))
        if not self._sending:
            # Nothing in flight: this caller sends, with whatever else is queued, and needs no
            # task of its own. It first lets the other requests of this turn of the event loop
            # (those whose heads arrived together) add their calls: one write for all of them.
            # Calls made while its batch is out wait for the next.
            self._sending = True
            try:
                await asyncio.sleep(0)
                await self._send(self._take_batch())
            finally:
                self._sending = False
                if self._pending:
                    self._spawn()
        return await future

    def _take_batch(self) -> list[_Call]:
        batch = self._pending[:self._max_batch]
        del self._pending[:self._max_batch]
        return batch

    def _spawn(self) -> None:
        """Sends what queued up meanwhile, from a task, so no caller waits for others."""
        self._sending = True

        async def drain() -> None:
            try:
                while self._pending:
                    await self._send(self._take_batch())
            finally:
                self._sending = False

        task = asyncio.ensure_future(drain())
        self._tasks.add(task)   # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            # Bounded: a hung Redis must not keep batches (and connections) waiting forever.
            async with asyncio.timeout(self._timeout):
                results = await self._execute(batch)
        except BaseException as error:  # the callers get the failure, each its own
            for call in batch:
                call.settle(error)
            if isinstance(error, asyncio.CancelledError):
                raise
            return
        for call, result in zip(batch, results, strict=True):
            call.settle(result)

    async def _execute(self, batch: list[_Call]) -> list:
        results = await self._pipeline(batch)
        missing = {call.script.script for call, result in zip(batch, results, strict=True)
                   if isinstance(result, NoScriptError) and call.script is not None}
        if missing:
            # Redis restarted or flushed its scripts: load them and send the batch again, in
            # one pipeline on this connection (a pooled one may still be a dead one).
            loads = [_Call(("SCRIPT", "LOAD", text), None, None) for text in missing]
            results = (await self._pipeline([*loads, *batch]))[len(loads):]
        return results

    async def _pipeline(self, batch: list[_Call]) -> list:
        # One batch is out at a time, so one connection of our own carries them all, written
        # at once and read at once (resp.py), without a Pipeline object or response callbacks.
        if self._connection is None:
            self._connection = await open_connection(self._client)
        connection = self._connection
        try:
            connection.send(b"".join([pack(call.args) for call in batch]))
            return await connection.replies(len(batch))
        except BaseException:
            # Cut short (a timeout, a broken socket): answers may still be on the way, so the
            # connection is closed, and opened again by the next batch.
            self._connection = None
            await connection.close()
            raise
