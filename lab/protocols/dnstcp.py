"""DNS over TCP (RFC 7766) with limits, so that one client cannot lock the others out.

BIND bounds TCP by ``tcp-clients`` (150 at once) and drops connections that stay quiet
(``tcp-initial-timeout``/``tcp-idle-timeout``). A bare global limit lets one address that
opens many connections and says nothing take every slot, so each client address also
gets at most ``per_client`` connections at a time (as Unbound's
``tcp-connection-limit`` does): one more from it is closed at once, while other clients
are still served.
"""
from __future__ import annotations

import asyncio
import struct
from collections import Counter
from collections.abc import Awaitable, Callable

TCP_IDLE = 10.0  # a TCP client that says nothing for this long is dropped
MAX_TCP_CLIENTS = 150  # BIND's tcp-clients default
MAX_TCP_PER_CLIENT = 16  # connections one client address may hold at once
MAX_TCP_MESSAGES = 100  # requests served on one connection before it is closed

Responder = Callable[[bytes, str], Awaitable[list[bytes]]]


class TcpClients:
    """The open TCP connections of one DNS service, counted per client address."""

    def __init__(self, respond: Responder, idle: float = TCP_IDLE,
                 total: int = MAX_TCP_CLIENTS, per_client: int = MAX_TCP_PER_CLIENT) -> None:
        self.respond = respond
        self.idle = idle
        self.total = total
        self.per_client = per_client
        self.writers: set[asyncio.StreamWriter] = set()
        self.by_client: Counter[str] = Counter()

    def close_all(self) -> None:
        for writer in list(self.writers):
            writer.close()
        self.writers.clear()
        self.by_client.clear()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: length-prefixed requests until the client goes quiet or away."""
        peer = writer.get_extra_info("peername")
        client = peer[0] if peer else ""
        if len(self.writers) >= self.total or self.by_client[client] >= self.per_client:
            writer.close()
            return
        self.writers.add(writer)
        self.by_client[client] += 1
        try:
            await self._exchange(reader, writer, client)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, OSError):
            pass
        finally:
            self.writers.discard(writer)
            self.by_client[client] -= 1
            if self.by_client[client] <= 0:
                del self.by_client[client]
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        client: str) -> None:
        for _ in range(MAX_TCP_MESSAGES):
            head = await asyncio.wait_for(reader.readexactly(2), self.idle)
            (length,) = struct.unpack("!H", head)
            data = await asyncio.wait_for(reader.readexactly(length), self.idle)
            replies = await self.respond(data, client)
            if not replies:
                return  # not a request (too short, or a response): drop the connection
            for reply in replies:
                writer.write(struct.pack("!H", len(reply)) + reply)
            await writer.drain()
