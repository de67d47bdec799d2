"""Servers accept the keepalive pings of long-lived client channels (the gateway and the order
service ping every second: services/common/keepalive.py). gRPC's default server policy answers
frequent pings with GOAWAY too_many_pings, which breaks every call in flight; here a client
pinging as they do keeps its stream for good."""

from __future__ import annotations

import asyncio

from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.keepalive import CLIENT_KEEPALIVE
from tests.trust import channel as secure_channel
from tests.trust import serve, session_state_dir, tls_for


async def test_frequent_keepalive_pings_do_not_break_a_stream() -> None:
    running = await serve([])
    tls = tls_for(session_state_dir(), "gateway")
    channel = secure_channel(f"127.0.0.1:{running.port}", tls, options=CLIENT_KEEPALIVE)
    try:
        stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        first = await stream.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        # A default server would have sent GOAWAY after the third ping, ending the stream.
        try:
            await asyncio.wait_for(stream.read(), timeout=6)
        except TimeoutError:
            pass
        else:
            raise AssertionError("the stream ended or changed while idle")
        stream.cancel()
    finally:
        await channel.close()
        await running.stop(0)
