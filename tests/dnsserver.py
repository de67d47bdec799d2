"""A DNS server of the tests' own on 127.0.0.1 (or the address `host` names) and a free UDP port
(or `port`; dnslib parses and builds the messages): it answers A queries for the names it is
given with the addresses the test sets, and can be made to stop answering (an outage).
`target(name, port)` is the dns://authority/ target that asks it. Its socket belongs to the
network namespace of the thread that makes the server (the multi-host tests make it inside
one)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable

from dnslib import QTYPE, RCODE, RR, A, DNSRecord


class DnsServer:
    """A-record answers for a few names, changed while it runs; a thread serves UDP."""

    def __init__(self, ttl: int = 0, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._records: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._ttl = ttl
        self.answering = True
        self.queries = 0       # answered
        self.unanswered = 0    # dropped during an outage
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.host = host
        self._socket.bind((host, port))
        self._socket.settimeout(0.1)
        self.port = self._socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)

    def __enter__(self) -> DnsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()

    def set(self, name: str, addresses: Iterable[str]) -> None:
        """From now on `name` resolves to `addresses` (none: NXDOMAIN)."""
        with self._lock:
            self._records[name.rstrip(".").lower()] = list(addresses)

    def target(self, name: str, port: int) -> str:
        """The dns: target asking this server for `name`, instances on `port`."""
        return f"dns://{self.host}:{self.port}/{name}:{port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not self.answering:
                self.unanswered += 1
                continue   # an outage: the query is never answered
            try:
                reply = self._reply(DNSRecord.parse(data))
            except Exception:   # a malformed query: no answer, as a real server might do
                continue
            self._socket.sendto(reply.pack(), peer)

    def _reply(self, query: DNSRecord) -> DNSRecord:
        self.queries += 1
        reply = query.reply()
        name = str(query.q.qname).rstrip(".").lower()
        with self._lock:
            addresses = self._records.get(name)
        if not addresses:
            reply.header.rcode = RCODE.NXDOMAIN
        elif query.q.qtype == QTYPE.A:
            for address in addresses:
                reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(address), ttl=self._ttl))
        # Any other type (AAAA, SRV...) of a known name: an empty NOERROR answer.
        return reply
