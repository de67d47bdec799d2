"""The batcher's connection to one Redis server: a pipeline written at once, its replies read
at once.

redis-py reads a pipeline's replies one `read_response()` at a time, each through a stack of
coroutines, a timeout context and error formatting: about 5 µs of CPU a reply and 50 µs a
round trip here, against 0.4 µs and 43 µs reading the socket straight into hiredis (the same
parser redis-py uses), measured side by side on one connection. The rate limiter's call of every
request is such a reply. So over plain TCP (the edge's Redis, and each node of a cluster) the
batcher keeps a connection of its own: opened, authenticated and set to its database as
redis-py would from the client's settings, then written and read straight. Anything else a
client may be set up for (TLS, a Unix socket, a credential provider) goes through redis-py's own
connection, as before.

Error replies come back as redis-py's exceptions (NOSCRIPT as NoScriptError, MOVED and ASK as
MovedError and AskError...), in place, like any reply; a broken stream raises.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, Connection, ConnectionPool
from redis.exceptions import (
    AskError,
    AuthenticationError,
    ClusterDownError,
    InvalidResponse,
    MovedError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

# Error replies redis-py raises as exceptions of their own (the prefix is not part of their
# message, as in redis-py); any other is a ResponseError with the whole message.
_ERRORS = (("NOSCRIPT ", NoScriptError), ("MOVED ", MovedError), ("ASK ", AskError),
           ("CLUSTERDOWN ", ClusterDownError), ("TRYAGAIN ", TryAgainError))
# Refusals of a sign-in (Redis 6+, and older servers' wording), kept whole.
_AUTH = ("WRONGPASS", "NOAUTH", "ERR invalid password")
READ_CHUNK = 64 * 1024


def pack(args: tuple[Any, ...]) -> bytes:
    """One command in Redis's protocol (RESP2), as redis-py's encoder writes it (str as UTF-8,
    int as its digits, float as its repr), at a fraction of its cost: the rate limiter's call
    of every request goes through here."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            value = arg
        elif isinstance(arg, str):
            value = arg.encode()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            value = b"%d" % arg
        elif isinstance(arg, float):
            value = repr(arg).encode()
        else:
            raise TypeError(f"Redis arguments are bytes, str, int or float, not {type(arg)}")
        parts.append(b"$%d\r\n%s\r\n" % (len(value), value))
    return b"".join(parts)


def reply_error(message: str) -> ResponseError | AuthenticationError:
    """An error reply as redis-py raises it."""
    if message.startswith(_AUTH):
        return AuthenticationError(message)
    for prefix, kind in _ERRORS:
        if message.startswith(prefix):
            return kind(message[len(prefix):])
    return ResponseError(message)


class RespConnection:
    """One TCP connection to Redis speaking RESP2, for a batcher: `send` a packed pipeline,
    then `replies(n)` its n replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = hiredis.Reader(protocolError=InvalidResponse, replyError=reply_error)

    @classmethod
    async def open(cls, options: dict[str, Any]) -> RespConnection:
        """Connected, authenticated and on the client's database, or raises as redis-py
        would (ConnectionError, AuthenticationError, TimeoutError)."""
        host, port = options.get("host", "localhost"), int(options.get("port", 6379))
        try:
            async with asyncio.timeout(options.get("socket_connect_timeout")):
                reader, writer = await asyncio.open_connection(host, port)
        except OSError as error:
            raise RedisConnectionError(f"Error connecting to {host}:{port}: {error}") from None
        connection = cls(reader, writer)
        try:
            await connection._hello(options)
        except BaseException:
            await connection.close()
            raise
        return connection

    async def _hello(self, options: dict[str, Any]) -> None:
        commands: list[tuple[Any, ...]] = []
        if options.get("password") is not None:
            user = options.get("username")
            commands.append(("AUTH", user, options["password"]) if user
                            else ("AUTH", options["password"]))
        if int(options.get("db") or 0):
            commands.append(("SELECT", int(options["db"])))
        if options.get("client_name"):
            commands.append(("CLIENT", "SETNAME", options["client_name"]))
        if not commands:
            return
        # Bounded by the batch that opens the connection, as any of its replies.
        self.send(b"".join(pack(command) for command in commands))
        for reply in await self.replies(len(commands)):
            if isinstance(reply, Exception):
                raise reply

    def send(self, data: bytes) -> None:
        self._writer.write(data)

    async def replies(self, count: int) -> list[Any]:
        """The next `count` replies, error replies as exceptions in their place; raises
        ConnectionError when Redis closes the connection first."""
        found: list[Any] = []
        parser = self._parser
        while True:
            reply = parser.gets()
            while reply is not False:
                found.append(reply)
                if len(found) == count:
                    return found
                reply = parser.gets()
            data = await self._reader.read(READ_CHUNK)
            if not data:
                raise RedisConnectionError("Redis closed the connection")
            parser.feed(data)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


class PooledConnection:
    """redis-py's own connection from the client's pool, for what RespConnection does not
    serve: the same `send` and `replies`, a reply at a time."""

    def __init__(self, connection: AbstractConnection) -> None:
        self._connection = connection
        self._unsent: list[bytes] = []

    def send(self, data: bytes) -> None:
        self._unsent.append(data)

    async def replies(self, count: int) -> list[Any]:
        data, self._unsent = b"".join(self._unsent), []
        await self._connection.send_packed_command(data, check_health=False)
        found: list[Any] = []
        for _ in range(count):
            try:
                found.append(await self._connection.read_response())
            except ResponseError as error:  # this command's own error: the stream is fine
                found.append(error)
        return found

    async def close(self) -> None:
        await self._connection.disconnect(nowait=True)


def own_connection_serves(pool: ConnectionPool) -> bool:
    """Whether RespConnection can stand for the connections of `pool`: plain TCP, RESP2, a
    password at most."""
    options = pool.connection_kwargs
    return (pool.connection_class is Connection and options.get("credential_provider") is None
            and str(options.get("protocol") or 2) == "2")


async def open_connection(client: Redis) -> RespConnection | PooledConnection:
    """The batcher's connection to the server of `client`."""
    pool = client.connection_pool
    if own_connection_serves(pool):
        return await RespConnection.open(pool.connection_kwargs)
    return PooledConnection(await pool.get_connection())
