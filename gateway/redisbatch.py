"""Calls of one Redis Lua script, batched into pipelines while Redis is busy.

Every request of a busy gateway calls the rate limiter's script once. Sent one by one, each
call pays for a connection from the pool, a write, a read and a parse: about 200 µs of CPU
here. The calls made while a batch is out go together as the next pipeline (one write, one read;
about 50 µs a call at 32 in flight), and each caller gets its own answer. A lone call goes out
at once, as it would without batching.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError


class ScriptBatcher:
    """`await batcher.call(keys, args)` runs the script like `Script.__call__` would."""

    def __init__(self, client: Redis, script: str, *, timeout: float,
                 max_batch: int = 128) -> None:
        self._client = client
        self._timeout = timeout
        self._script = client.register_script(script)
        self._max_batch = max_batch
        self._pending: list[tuple[Sequence[str], Sequence[Any], asyncio.Future]] = []
        self._sending = False
        self._tasks: set[asyncio.Task] = set()

    async def call(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((keys, args, future))
        if not self._sending:
            # Nothing in flight: this caller sends at once, with whatever else is queued, and
            # needs no task of its own. Calls made while its batch is out wait for the next.
            self._sending = True
            try:
                await self._send(self._take_batch())
            finally:
                self._sending = False
                if self._pending:
                    self._spawn()
        return await future

    def _take_batch(self) -> list:
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

    async def _send(self, batch: list) -> None:
        try:
            # Bounded: a hung Redis must not keep batches (and connections) waiting forever.
            async with asyncio.timeout(self._timeout):
                results = await self._execute(batch)
        except BaseException as error:  # the callers get the failure, each its own
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(error if isinstance(error, Exception)
                                         else ConnectionError("cancelled"))
            return
        for (_, _, future), result in zip(batch, results, strict=True):
            if not future.done():
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _execute(self, batch: list) -> list:
        results = await self._pipeline(batch)
        if any(isinstance(result, NoScriptError) for result in results):
            # Redis restarted or flushed its scripts: load it and send the batch again.
            await self._client.script_load(self._script.script)
            results = await self._pipeline(batch)
        return results

    async def _pipeline(self, batch: list) -> list:
        pipe = self._client.pipeline(transaction=False)
        for keys, args, _ in batch:
            pipe.evalsha(self._script.sha, len(keys), *keys, *args)
        return await pipe.execute(raise_on_error=False)
