"""A proxy that takes the port of a killed instance and can drop the connection of one call.

The hops are mutual TLS, so the proxy ends TLS on both sides: it answers the gateway with a
certificate of the stack's CA for the instance's identity (valid for 127.0.0.1, as the gateway
checks), and calls the stand-in with one of its own. In between it sees HTTP/2 frames in clear,
and can hold back the one that starts a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scripts.devstack.servers import find_free_port
from scripts.devstack.stack import Stack
from services.common.pki import TlsMaterial
from tests.trust import sync_channel, tls_for

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADERS_FRAME = 0x1


class CuttingProxy:
    """Takes the port of a killed instance and forwards it to a stand-in: the same service
    started again on another port, so the gateway sees the instance healthy again. Armed, the
    proxy drops the connection on which the next call begins (the gateway's next HTTP/2
    HEADERS frame) before any byte of that call reaches the service: to the gateway, an
    instance that died just as the call was sent, while its health checks said SERVING."""

    def __init__(self, port: int, stand_in: subprocess.Popen, stand_in_port: int, *,
                 served_as: TlsMaterial, calls_as: TlsMaterial) -> None:
        self._stand_in = stand_in
        self._target = ("127.0.0.1", stand_in_port)
        self._server_tls = _context(served_as, server=True)
        self._client_tls = _context(calls_as, server=False)
        self._lock = threading.Lock()
        self._armed = False
        self._writers: set[asyncio.StreamWriter] = set()
        self.cuts = 0
        self.calls_since_cut = 0   # calls begun through the proxy since the last cut
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        self._server = self._run(asyncio.start_server(
            self._serve, "127.0.0.1", port, ssl=self._server_tls))

    @classmethod
    def take_over(cls, stack: Stack, name: str) -> CuttingProxy:
        child = stack.children[name]
        port = int(child.command[child.command.index("--port") + 1])
        stack.kill(name)
        stand_in_port = find_free_port()
        command = list(child.command)
        command[command.index("--port") + 1] = str(stand_in_port)
        log = open(Path(stack.config.log_dir) / f"{name}-stand-in.log", "ab")  # noqa: SIM115
        stand_in = subprocess.Popen(command, env=child.env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        state = Path(child.env["PORTICO_STATE_DIR"])
        try:
            _wait_serving(f"127.0.0.1:{stand_in_port}", stand_in, tls_for(state, "devstack"))
            return cls(port, stand_in, stand_in_port, served_as=tls_for(
                state, name.rsplit("-", 1)[0]), calls_as=tls_for(state, "gateway"))
        except BaseException:
            stand_in.kill()
            stand_in.wait()
            raise

    def arm(self) -> None:
        with self._lock:
            self._armed = True

    def close(self) -> None:
        self._run(self._shut_down())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._stand_in.terminate()
        try:
            self._stand_in.wait(15)
        except subprocess.TimeoutExpired:
            self._stand_in.kill()
            self._stand_in.wait()

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    async def _shut_down(self) -> None:
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()

    async def _serve(self, client_in: asyncio.StreamReader,
                     client_out: asyncio.StreamWriter) -> None:
        try:
            upstream_in, upstream_out = await asyncio.open_connection(
                *self._target, ssl=self._client_tls, server_hostname="127.0.0.1")
        except OSError:
            client_out.transport.abort()
            return
        self._writers |= {client_out, upstream_out}
        try:
            await asyncio.gather(self._pump(upstream_in, client_out),
                                 self._forward_calls(client_in, upstream_out, client_out))
        finally:
            for writer in (client_out, upstream_out):
                self._writers.discard(writer)
                writer.transport.abort()

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        sink.transport.abort()

    async def _forward_calls(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                             client: asyncio.StreamWriter) -> None:
        """Forwards whole HTTP/2 frames, so that the one starting a call can be held back."""
        pending, preface = b"", len(HTTP2_PREFACE)
        with contextlib.suppress(OSError, ConnectionError):
            while chunk := await source.read(65536):
                pending += chunk
                taken = min(preface, len(pending))
                ready, pending, preface = pending[:taken], pending[taken:], preface - taken
                while not preface and len(pending) >= 9:
                    size = 9 + int.from_bytes(pending[:3], "big")
                    if len(pending) < size:
                        break
                    if pending[3] == HEADERS_FRAME:
                        if self._claim_cut():
                            _reset(client)
                            return
                        self.calls_since_cut += 1
                    ready, pending = ready + pending[:size], pending[size:]
                if ready:
                    sink.write(ready)
                    await sink.drain()
        sink.transport.abort()

    def _claim_cut(self) -> bool:
        with self._lock:
            if not self._armed:
                return False
            self._armed = False
            self.cuts += 1
            self.calls_since_cut = 0
            return True


def _reset(writer: asyncio.StreamWriter) -> None:
    """An abortive close (RST): the call is lost on the wire."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _context(tls: TlsMaterial, *, server: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.set_alpn_protocols(["h2"])   # gRPC insists on HTTP/2 by ALPN
    with tempfile.TemporaryDirectory() as scratch:
        cert, key = Path(scratch) / "cert.pem", Path(scratch) / "key.pem"
        cert.write_bytes(tls.cert_pem)
        key.write_bytes(tls.key_pem)
        context.load_cert_chain(cert, key)
    if not server:
        context.load_verify_locations(cadata=tls.ca_pem.decode())
    return context


def _wait_serving(address: str, process: subprocess.Popen, tls: TlsMaterial,
                  attempts: int = 600) -> None:
    with sync_channel(address, tls) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(attempts):
            if process.poll() is not None:
                raise RuntimeError(f"the stand-in at {address} exited with {process.returncode}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == \
                        health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"the stand-in at {address} did not start")
