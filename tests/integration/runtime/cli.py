"""A service run as the `portico` command would run it in production: migrated, then served
as a process of its own until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from scripts.devstack.servers import find_free_port
from tests.trust import channel as secure_channel
from tests.trust import tls_for

PORTICO = str(Path(sys.executable).parent / "portico")


@dataclass
class ServiceProcess:
    """The channel to the running service; its exit code and stderr once it has stopped."""

    channel: grpc.aio.Channel
    returncode: int | None = None
    log: bytes = b""


@contextlib.asynccontextmanager
async def portico_service(kind: str, env: dict[str, str]) -> AsyncIterator[ServiceProcess]:
    """`portico migrate KIND` (which must succeed), then `portico service KIND` on a free
    port, ready to call (as the gateway, with a certificate of the CA under the env's
    PORTICO_STATE_DIR); stopped with SIGTERM on the way out."""
    migrate = await asyncio.create_subprocess_exec(PORTICO, "migrate", kind, env=env)
    assert await migrate.wait() == 0
    port = find_free_port()
    service = await asyncio.create_subprocess_exec(
        PORTICO, "service", kind, "--port", str(port), env=env, stderr=asyncio.subprocess.PIPE)
    try:
        tls = tls_for(Path(env["PORTICO_STATE_DIR"]), "gateway")
        async with secure_channel(f"127.0.0.1:{port}", tls) as channel:
            await asyncio.wait_for(channel.channel_ready(), 60)
            running = ServiceProcess(channel)
            yield running
    finally:
        service.send_signal(signal.SIGTERM)
        _, log = await service.communicate()
    running.returncode, running.log = service.returncode, log
