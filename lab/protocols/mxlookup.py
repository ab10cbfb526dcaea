"""Find where to deliver mail for a domain: MX, then A, as the node's own resolver sees it.

Queries go over UDP on a socket from ``node.socket()`` to the first ``nameserver`` in the
node's ``/etc/resolv.conf``, so a broken resolver on the node breaks its mail, as it
should. Failures are told apart the way Postfix tells them apart: a domain that does
not exist (permanent), a name with no usable record (permanent), and a resolver that
does not answer (temporary).
"""
from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

from dnslib import QTYPE, RCODE, DNSRecord

from lab.protocols.node import NodeContext

NXDOMAIN = "nxdomain"
NODATA = "nodata"
TIMEOUT = "timeout"
SERVFAIL = "servfail"
REFUSED = "refused"
NO_RESOLVER = "noresolver"

_TEMPORARY = {TIMEOUT, SERVFAIL, REFUSED, NO_RESOLVER}


class DnsError(Exception):
    """A lookup that gave no usable answer. ``kind`` is one of the constants above."""

    def __init__(self, kind: str, name: str, qtype: str, detail: str = "") -> None:
        self.kind = kind
        self.name = name
        self.qtype = qtype
        self.detail = detail
        super().__init__(self.reason)

    @property
    def temporary(self) -> bool:
        return self.kind in _TEMPORARY

    @property
    def reason(self) -> str:
        """The text Postfix puts in a deferred/bounced status."""
        what = {
            NXDOMAIN: "Host not found",
            NODATA: "Host found but no data record of requested type",
        }.get(self.kind, "Host not found, try again")
        return (
            f"Host or domain name not found. Name service error for name={self.name} "
            f"type={self.qtype}: {what}"
        )


@dataclass
class MxHost:
    """One mail exchanger and its IPv4 addresses (preference 0 for an implicit MX)."""

    preference: int
    name: str
    addresses: list[str] = field(default_factory=list)


def nameservers(node: NodeContext) -> list[str]:
    """The ``nameserver`` lines of the node's resolv.conf, in order."""
    try:
        text = node.path("/etc/resolv.conf").read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            out.append(parts[1])
    return out


async def query(
    node: NodeContext,
    name: str,
    qtype: str,
    *,
    port: int = 53,
    timeout: float = 2.0,
    attempts: int = 2,
    server: str | None = None,
) -> DNSRecord:
    """One recursive query to the node's first nameserver; the raw answer, any rcode.

    Raises ``DnsError`` (kind timeout / noresolver) when no answer comes back.
    """
    if server is None:
        servers = nameservers(node)
        if not servers:
            raise DnsError(NO_RESOLVER, name, qtype, "no nameserver in /etc/resolv.conf")
        server = servers[0]
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    loop = asyncio.get_running_loop()
    detail = "timed out"
    for _ in range(max(1, attempts)):
        request = DNSRecord.question(name, qtype)
        sock = node.socket(family, socket.SOCK_DGRAM)
        try:
            # A connected UDP socket only sees replies from the server, and hears an
            # ICMP port unreachable as ConnectionRefusedError.
            sock.connect((server, port))
            await loop.sock_sendall(sock, request.pack())
            deadline = loop.time() + timeout  # the lab's clock (lab/protocols/clock.py)
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError
                data = await asyncio.wait_for(loop.sock_recv(sock, 65535), left)
                try:
                    reply = DNSRecord.parse(data)
                except Exception:  # noqa: BLE001, S112 - dnslib raises many types for junk
                    continue
                if reply.header.id == request.header.id:
                    return reply
        except TimeoutError:
            detail = "timed out"
        except OSError as e:
            detail = e.strerror or str(e)
            await asyncio.sleep(min(timeout, 0.2))
        finally:
            sock.close()
    raise DnsError(TIMEOUT, name, qtype, f"{server}:{port}: {detail}")


def _check_rcode(reply: DNSRecord, name: str, qtype: str) -> None:
    rcode = reply.header.rcode
    if rcode == RCODE.NXDOMAIN:
        raise DnsError(NXDOMAIN, name, qtype)
    if rcode == RCODE.REFUSED:
        raise DnsError(REFUSED, name, qtype, "query refused")
    if rcode != RCODE.NOERROR:
        raise DnsError(SERVFAIL, name, qtype, RCODE.get(rcode, str(rcode)))


async def lookup_a(node: NodeContext, name: str, **kw: object) -> list[str]:
    """The IPv4 addresses of ``name`` (following a CNAME chain in the answer)."""
    reply = await query(node, name, "A", **kw)  # type: ignore[arg-type]
    _check_rcode(reply, name, "A")
    addrs = [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]
    if not addrs:
        raise DnsError(NODATA, name, "A")
    return addrs


async def lookup_mx(
    node: NodeContext, domain: str, *, port: int = 53, timeout: float = 2.0, attempts: int = 2
) -> list[MxHost]:
    """Mail exchangers of ``domain`` by preference, each with its addresses.

    No MX record: the domain's own A record is the implicit MX (RFC 5321 5.1). MX hosts
    whose address cannot be found are left out; if none is left, the last error is
    raised.
    """
    kw = {"port": port, "timeout": timeout, "attempts": attempts}
    domain = domain.rstrip(".").lower()
    reply = await query(node, domain, "MX", **kw)
    _check_rcode(reply, domain, "MX")
    mxs = sorted(
        (rr.rdata.preference, str(rr.rdata.label).rstrip(".").lower())
        for rr in reply.rr
        if rr.rtype == QTYPE.MX
    )
    if not mxs:
        return [MxHost(0, domain, await lookup_a(node, domain, **kw))]
    glue: dict[str, list[str]] = {}
    for rr in reply.ar:
        if rr.rtype == QTYPE.A:
            glue.setdefault(str(rr.rname).rstrip(".").lower(), []).append(str(rr.rdata))
    hosts: list[MxHost] = []
    last: DnsError | None = None
    for pref, name in mxs:
        addrs = glue.get(name)
        if not addrs:
            try:
                addrs = await lookup_a(node, name, **kw)
            except DnsError as e:
                last = e
                continue
        hosts.append(MxHost(pref, name, addrs))
    if not hosts:
        assert last is not None
        raise last
    return hosts
