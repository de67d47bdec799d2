"""The test's own side of the network: an asyncio loop in a thread that entered the client
namespace, so every connection the test's checks and load open starts there (none from the root
namespace). Coroutines are handed to it with `run` (wait for the result) or `start` (a future).

`Http` is an HTTP client bound to one of the client machine's source addresses: the gateways
key their rate limits by client address (as HAProxy reports it in X-Forwarded-For), so each
load spreads over several addresses to stay under the default 50 requests/s of one client, and
the rate-limit test uses an address of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx

from tests.multihost.namespaces import Netns, enter

_T = TypeVar("_T")


class ClientLoop:
    """An event loop running in a thread inside `netns`."""

    def __init__(self, netns: Netns) -> None:
        self.netns = netns
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=f"loop-{netns.name}",
                                        daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        try:
            enter(self.netns.name)
        except BaseException as error:
            self._error = error
            self._ready.set()
            return
        asyncio.set_event_loop(self.loop)
        self._ready.set()
        self.loop.run_forever()

    def start(self, coroutine: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine: Coroutine[Any, Any, _T], timeout: float = 120) -> _T:
        future = self.start(coroutine)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"client work did not finish within {timeout:g}s") from None

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self.loop.is_running():
            try:
                self.run(cancel_all(), timeout=10)
            except (TimeoutError, RuntimeError):
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


def http(base_url: str, source: str, *, timeout: float = 20.0,
         connections: int = 16) -> httpx.AsyncClient:
    """An HTTP client of `base_url` whose connections leave from `source` (an address of the
    client machine). Made and used on the client loop only."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    transport = httpx.AsyncHTTPTransport(local_address=source, retries=0, limits=limits)
    return httpx.AsyncClient(base_url=base_url, transport=transport, timeout=timeout)
