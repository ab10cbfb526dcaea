"""The firewall's connection log: an NFLOG reader over netlink, and the line format.

nftables rules log the first packet of each new connection to NFLOG group N with a
prefix ``P <rule>`` or ``D`` (see nftrules.py). ``ConnLog`` binds that group on a
NETLINK_NETFILTER socket made in the firewall node's namespace, reads it on the asyncio
loop, and appends one line per connection attempt to /var/log/netguard/conn.log::

    2026-11-25T16:50:01 P tcp 203.0.113.20:40112 203.0.113.25:25 rule=smtp-in nat=10.1.0.25:25
    2026-11-25T16:50:02 P tcp 10.1.0.25:39170 203.0.113.20:25 rule=smtp-out snat=203.0.113.1

Column 2 is the verdict: P permitted, D denied, X proxied (outbound), Xr proxied and
relayed (inbound, to a server inside). ``nat=`` is where a static NAT sent an inbound
connection, ``snat=`` the address an outbound one leaves with (the static NAT's public
address, or the firewall's own for dynamic NAT). The proxy appends its X / Xr (and D)
lines with ``log_proxy``; what goes wrong after that is in the error log.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import LabError
from lab.protocols.node import NodeContext

log = logging.getLogger(__name__)

CONN_LOG = "/var/log/netguard/conn.log"
ERROR_LOG = "/var/log/netguard/error.log"  # what went wrong, for the admin (docs/method.md, inbound step 7)

NETLINK_NETFILTER = 12
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1
NFNETLINK_V0 = 0

NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULA_CFG_TIMEOUT = 4
NFULA_CFG_QTHRESH = 5
NFULNL_CFG_CMD_BIND = 1
NFULNL_CFG_CMD_UNBIND = 2
NFULNL_CFG_CMD_PF_BIND = 3
NFULNL_COPY_PACKET = 2

NFULA_PACKET_HDR = 1
NFULA_MARK = 2
NFULA_IFINDEX_INDEV = 4
NFULA_IFINDEX_OUTDEV = 5
NFULA_PAYLOAD = 9
NFULA_PREFIX = 10
NLA_TYPE_MASK = 0x3FFF

COPY_RANGE = 128
DEDUP_SECONDS = 30.0
STATIC_MARK_BASE = 0x4E470000  # must match lab.protocols.nftrules

PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp"}
VERDICTS = ("P", "D", "X", "Xr")


# ---------------------------------------------------------------- netlink encoding

def _nla(attr_type: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    pad = (-length) % 4
    return struct.pack("=HH", length, attr_type) + payload + b"\0" * pad


def config_message(group: int, family: int, attrs: bytes, seq: int) -> bytes:
    """One NFULNL_MSG_CONFIG request (nlmsghdr + nfgenmsg + attributes), asking an ACK."""
    body = struct.pack("=BBH", family, NFNETLINK_V0, socket.htons(group)) + attrs
    msg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
    return struct.pack("=IHHII", 16 + len(body), msg_type, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def bind_messages(group: int) -> list[bytes]:
    """PF_BIND for IPv4, BIND the group, copy packets (first COPY_RANGE bytes), flush each."""
    return [
        config_message(0, socket.AF_INET, _nla(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_PF_BIND])), 1),
        config_message(group, socket.AF_UNSPEC,
                       _nla(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND])), 2),
        config_message(group, socket.AF_UNSPEC,
                       _nla(NFULA_CFG_MODE, struct.pack(">IBB", COPY_RANGE, NFULNL_COPY_PACKET, 0))
                       + _nla(NFULA_CFG_QTHRESH, struct.pack(">I", 1))
                       + _nla(NFULA_CFG_TIMEOUT, struct.pack(">I", 1)), 3),
    ]


def unbind_message(group: int) -> bytes:
    return config_message(group, socket.AF_UNSPEC,
                          _nla(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_UNBIND])), 4)


# ---------------------------------------------------------------- netlink decoding

def split_messages(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, seq, payload) of each netlink message in one datagram."""
    out = []
    off = 0
    while off + 16 <= len(data):
        length, msg_type, _flags, seq, _pid = struct.unpack_from("=IHHII", data, off)
        if length < 16 or off + length > len(data):
            break
        out.append((msg_type, seq, data[off + 16: off + length]))
        off += (length + 3) & ~3
    return out


def parse_attrs(data: bytes) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    off = 0
    while off + 4 <= len(data):
        length, attr_type = struct.unpack_from("=HH", data, off)
        if length < 4 or off + length > len(data):
            break
        attrs[attr_type & NLA_TYPE_MASK] = data[off + 4: off + length]
        off += (length + 3) & ~3
    return attrs


@dataclass(frozen=True)
class NflogPacket:
    prefix: str
    mark: int
    hook: int | None
    indev: int | None
    outdev: int | None
    payload: bytes


def parse_packet_message(payload: bytes) -> NflogPacket:
    """An NFULNL_MSG_PACKET body (after the nlmsghdr): nfgenmsg + attributes."""
    attrs = parse_attrs(payload[4:])

    def be32(key: int) -> int | None:
        v = attrs.get(key)
        return struct.unpack(">I", v[:4])[0] if v and len(v) >= 4 else None

    hdr = attrs.get(NFULA_PACKET_HDR)
    return NflogPacket(
        prefix=attrs.get(NFULA_PREFIX, b"").split(b"\0", 1)[0].decode("ascii", "replace"),
        mark=be32(NFULA_MARK) or 0,
        hook=hdr[2] if hdr and len(hdr) >= 3 else None,
        indev=be32(NFULA_IFINDEX_INDEV),
        outdev=be32(NFULA_IFINDEX_OUTDEV),
        payload=attrs.get(NFULA_PAYLOAD, b""),
    )


@dataclass(frozen=True)
class Flow:
    proto: str
    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    icmp_id: int | None = None


def parse_ipv4(packet: bytes) -> Flow | None:
    """Protocol, addresses and ports (or ICMP type/id) of an IPv4 packet; None otherwise."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    proto_num = packet[9]
    src = str(ipaddress.IPv4Address(packet[12:16]))
    dst = str(ipaddress.IPv4Address(packet[16:20]))
    l4 = packet[ihl:]
    proto = PROTO_NAMES.get(proto_num, str(proto_num))
    if proto_num in (6, 17) and len(l4) >= 4:
        sport, dport = struct.unpack_from(">HH", l4)
        return Flow(proto, src, dst, sport=sport, dport=dport)
    if proto_num == 1 and len(l4) >= 2:
        icmp_id = struct.unpack_from(">H", l4, 4)[0] if len(l4) >= 6 else None
        return Flow(proto, src, dst, icmp_type=l4[0], icmp_id=icmp_id)
    return Flow(proto, src, dst)


# ---------------------------------------------------------------- lines

def _endpoint(addr: str, port: int | None) -> str:
    return f"{addr}:{port}" if port is not None else addr


def timestamp(when: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() if when is None else when))


def format_line(when: str, verdict: str, proto: str, src: str, sport: int | None,
                dst: str, dport: int | None, extras: list[tuple[str, str]] = ()) -> str:
    """One connection-log line: time, verdict, proto, source, destination, key=value..."""
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}")
    cols = [when, verdict, proto, _endpoint(src, sport), _endpoint(dst, dport)]
    cols += [f"{k}={v}" for k, v in extras]
    return " ".join(cols)


def verdict_of(prefix: str) -> tuple[str, str] | None:
    """('P', rule) or ('D', 'default') from an NFLOG prefix; None for foreign prefixes."""
    parts = prefix.strip().split()
    if parts == ["D"]:
        return "D", "default"
    if len(parts) == 2 and parts[0] == "P":
        return "P", parts[1]
    return None


@dataclass(frozen=True)
class StaticEntry:
    public: str
    private: str


@dataclass(frozen=True)
class SourceNat:
    """How connections from inside leave: the networks behind the firewall (its LAN, and
    a DMZ) and, with dynamic NAT, the address they take, the firewall's external one.
    Between two networks behind the firewall (the DMZ to the LAN) nothing is translated."""

    networks: tuple[ipaddress.IPv4Network, ...] = ()
    address: str = ""  # "": no dynamic NAT

    def address_for(self, src: str, dst: str, static_nat: list[StaticEntry]) -> str | None:
        try:
            s, d = ipaddress.IPv4Address(src), ipaddress.IPv4Address(dst)
        except ValueError:
            return None
        if any(d in n for n in self.networks):
            return None  # stays behind the firewall
        for entry in static_nat:
            if entry.private == src:
                return entry.public
        if self.address and any(s in n for n in self.networks):
            return self.address
        return None


def line_for_packet(pkt: NflogPacket, static_nat: list[StaticEntry], when: str,
                    snat: SourceNat = SourceNat()) -> str | None:
    """The log line for one NFLOG packet, showing the original destination of a DNAT and
    the address a source NAT will give it."""
    verdict = verdict_of(pkt.prefix)
    flow = parse_ipv4(pkt.payload)
    if verdict is None or flow is None:
        return None
    dst, extras = flow.dst, []
    index = pkt.mark - STATIC_MARK_BASE - 1
    if 0 <= index < len(static_nat) and static_nat[index].private == flow.dst:
        dst = static_nat[index].public
    if flow.icmp_type is not None:
        extras.append(("type", str(flow.icmp_type)))
    extras.append(("rule", verdict[1]))
    if dst != flow.dst:
        extras.append(("nat", _endpoint(flow.dst, flow.dport)))
    elif verdict[0] == "P":
        source = snat.address_for(flow.src, flow.dst, static_nat)
        if source is not None:
            extras.append(("snat", source))
    return format_line(when, verdict[0], flow.proto, flow.src, flow.sport, dst, flow.dport, extras)


def append_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="ascii") as f:
        f.write(line + "\n")


def log_proxy(node: NodeContext, verdict: str, src: tuple[str, int], dst: tuple[str, int],
              mode: str, relay: tuple[str, int] | None = None, snat: str | None = None) -> str:
    """Append a proxy line (X, Xr, or D) to the node's connection log; returns the line."""
    extras = [("proxy", mode)]
    if relay is not None:
        extras.append(("relay", _endpoint(*relay)))
    if snat is not None:
        extras.append(("snat", snat))
    line = format_line(timestamp(node.clock.time()), verdict, "tcp", src[0], src[1], dst[0],
                       dst[1], extras)
    append_line(node.path(CONN_LOG), line)
    return line


def log_error(node: NodeContext, component: str, message: str) -> str:
    """Append a line to the firewall's error log: ``<time> <component>: <message>``."""
    line = f"{timestamp(node.clock.time())} {component}: {message}"
    append_line(node.path(ERROR_LOG), line)
    return line


# ---------------------------------------------------------------- the reader

@dataclass
class ConnLog:
    """Reads NFLOG group ``group`` in the node's namespace and writes the connection log."""

    node: NodeContext
    group: int = 1
    static_nat: list[StaticEntry] = field(default_factory=list)
    snat: SourceNat = field(default_factory=SourceNat)
    _sock: socket.socket | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _seen: dict[tuple, float] = field(default_factory=dict)
    lines_written: int = 0

    @property
    def path(self) -> Path:
        return self.node.path(CONN_LOG)

    @property
    def running(self) -> bool:
        return self._sock is not None

    async def start(self) -> None:
        if self._sock is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        sock = self.node.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            sock.setblocking(False)
            sock.bind((0, 0))
            for msg in bind_messages(self.group):
                self._request(sock, msg)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._on_readable)

    def _request(self, sock: socket.socket, msg: bytes) -> None:
        """Send one config request and check its ACK (the kernel answers synchronously)."""
        sock.send(msg)
        seq = struct.unpack_from("=I", msg, 8)[0]
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            for msg_type, msg_seq, payload in split_messages(data):
                if msg_type == NLMSG_ERROR and msg_seq == seq:
                    err = -struct.unpack_from("=i", payload)[0]
                    if err:
                        raise LabError(
                            f"{self.node.name}: cannot bind NFLOG group {self.group}: "
                            f"{os.strerror(err)}",
                            hint="another program (tcpdump -i nflog:N?) may hold the group",
                        )
                    return
        raise TimeoutError("no answer from nfnetlink_log")

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(64):
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as e:  # ENOBUFS: the kernel dropped messages; keep reading
                log.warning("%s: NFLOG read: %s", self.node.name, e)
                return
            self.handle_datagram(data)

    def handle_datagram(self, data: bytes, now: float | None = None) -> list[str]:
        """Turn one netlink datagram into log lines (deduplicating retransmitted SYNs)."""
        now = self.node.clock.time() if now is None else now
        written = []
        for msg_type, _seq, payload in split_messages(data):
            if msg_type != (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
                continue
            pkt = parse_packet_message(payload)
            flow = parse_ipv4(pkt.payload)
            key = (pkt.prefix, flow)
            if flow is not None and now - self._seen.get(key, -1e18) < DEDUP_SECONDS:
                continue
            line = line_for_packet(pkt, self.static_nat, timestamp(now), self.snat)
            if line is None:
                continue
            self._seen[key] = now
            if len(self._seen) > 4096:
                self._seen = {k: t for k, t in self._seen.items() if now - t < DEDUP_SECONDS}
            append_line(self.path, line)
            self.lines_written += 1
            written.append(line)
        return written

    async def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(sock.fileno())
        try:
            sock.send(unbind_message(self.group))
        except OSError:
            pass
        sock.close()
