"""DNS messages on the wire, read and written the way BIND 9.18 does.

``parse_query`` reads a request as strictly as BIND's message parser: reserved label
types (0x40, 0x80), names over 255 octets, forward or looping compression pointers,
counts promising more than is there, an OPT record that is not owned by the root, not in
the additional section, or not the only one, all raise :class:`FormErr` (answered FORMERR,
echoing the question only when the question section itself was sound). Bytes after the
last record are ignored, as BIND 9.18 ignores them (``dns_message_parse`` only logs
"message has N byte(s) of trailing garbage"). A message shorter than a header, or one
with the QR bit set, is not answered at all (:class:`Drop`).

``render`` writes a reply within a size: whole RRsets only, additional data dropped
first, TC set when the answer or authority section does not fit (RFC 2181 9, as BIND's
``ns_client_send``).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from dnslib import QTYPE, RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

HEADER_LEN = 12
MAX_NAME = 255
EDNS_SIZE = 1232  # what this server advertises and the most it sends over UDP (BIND's default)
DO_FLAG = 0x8000
QR, OPCODE_SHIFT, RD, CD = 0x8000, 11, 0x0100, 0x0010
FORMERR, BADVERS = 1, 16
_OPT = QTYPE.OPT
_SOA = QTYPE.SOA
_TSIG, _TKEY, _KEY, _SIG = 250, 249, 25, 24  # records whose class may differ (RFC 2845...)


class Drop(Exception):
    """A message not to answer: shorter than a header, or a response."""


class FormErr(Exception):
    """A request BIND's parser rejects; the reply is FORMERR."""

    def __init__(self, ident: int, flags: int, questions: list[DNSQuestion] | None) -> None:
        super().__init__("malformed request")
        self.ident = ident
        self.flags = flags
        self.questions = questions  # None when the question section itself was bad

    def reply(self) -> bytes:
        """FORMERR, no OPT (BIND answers a request it could not parse without one)."""
        return error_reply(self.ident, self.flags, self.questions or [], FORMERR)


@dataclass
class Edns:
    """The requestor's OPT record."""

    version: int = 0
    udp_size: int = 512
    do: bool = False


@dataclass
class Query:
    """A parsed request: header bits, questions, EDNS, and the SOAs an IXFR carries."""

    ident: int
    flags: int
    questions: list[DNSQuestion]
    edns: Edns | None = None
    soa_serials: dict[DNSLabel, list[int]] = field(default_factory=dict)

    @property
    def opcode(self) -> int:
        return (self.flags >> OPCODE_SHIFT) & 0xF

    @property
    def rd(self) -> bool:
        return bool(self.flags & RD)

    @property
    def cd(self) -> bool:
        return bool(self.flags & CD)

    def udp_limit(self) -> int:
        """The largest UDP reply: 512 without EDNS, else the requestor's size (at least
        512) but never more than this server advertises."""
        if self.edns is None:
            return 512
        return min(max(512, self.edns.udp_size), EDNS_SIZE)


class _Bad(Exception):
    """Inside the parser: the message is malformed here."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = HEADER_LEN

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _Bad("unexpected end")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u16(self) -> int:
        return struct.unpack("!H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("!I", self.take(4))[0]

    def name(self) -> DNSLabel:
        """A (possibly compressed) name, checked like BIND's ``dns_name_fromwire``."""
        labels: list[bytes] = []
        wire = 1  # the root label
        pos, end = self.pos, None
        lowest = pos  # every pointer must go strictly backwards from the last one
        while True:
            if pos >= len(self.data):
                raise _Bad("unexpected end")
            length = self.data[pos]
            kind = length & 0xC0
            if kind == 0xC0:
                if pos + 1 >= len(self.data):
                    raise _Bad("unexpected end")
                target = ((length & 0x3F) << 8) | self.data[pos + 1]
                if target >= lowest:
                    raise _Bad("bad compression pointer")
                if end is None:
                    end = pos + 2
                pos = lowest = target
                continue
            if kind:
                raise _Bad("bad label type")
            if length == 0:
                break
            wire += length + 1
            if wire > MAX_NAME:
                raise _Bad("name too long")
            if pos + 1 + length > len(self.data):
                raise _Bad("unexpected end")
            labels.append(self.data[pos + 1:pos + 1 + length])
            pos += 1 + length
        self.pos = end if end is not None else pos + 1
        return DNSLabel(labels)


def parse_query(data: bytes) -> Query:
    """The request in ``data``; raises Drop or FormErr (see the module's docstring)."""
    data = bytes(data)  # labels are slices of it, and must hash
    if len(data) < HEADER_LEN:
        raise Drop("short")
    ident, flags, qd, an, ns, ar = struct.unpack("!6H", data[:HEADER_LEN])
    if flags & QR:
        raise Drop("response")
    reader = _Reader(data)
    try:
        questions = _questions(reader, qd)
    except _Bad:
        raise FormErr(ident, flags, None) from None
    query = Query(ident, flags, questions)
    qclass = questions[0].qclass if questions else None
    try:
        for section, count in ((1, an), (2, ns), (3, ar)):
            for _ in range(count):
                _record(reader, section, qclass, query)
    except _Bad:
        raise FormErr(ident, flags, questions) from None
    return query


def _questions(reader: _Reader, count: int) -> list[DNSQuestion]:
    out: list[DNSQuestion] = []
    for _ in range(count):
        name = reader.name()
        qtype, qclass = reader.u16(), reader.u16()
        if out and (name != out[0].qname or qclass != out[0].qclass
                    or any(q.qtype == qtype for q in out)):
            raise _Bad("a second, different question")
        out.append(DNSQuestion(name, qtype, qclass))
    return out


def _record(reader: _Reader, section: int, qclass: int | None, query: Query) -> None:
    owner = reader.name()
    rtype, rclass, ttl, rdlength = reader.u16(), reader.u16(), reader.u32(), reader.u16()
    start = reader.pos
    reader.take(rdlength)
    if rtype == _OPT:
        if owner.label or section != 3 or query.edns is not None:
            raise _Bad("misplaced OPT")
        _check_options(reader.data[start:start + rdlength])
        query.edns = Edns(version=(ttl >> 16) & 0xFF, udp_size=rclass, do=bool(ttl & DO_FLAG))
        return
    if qclass is not None and rclass != qclass and rtype not in (_TSIG, _TKEY, _KEY, _SIG):
        raise _Bad("class differs from the question's")
    if rtype == _SOA:
        query.soa_serials.setdefault(owner, []).append(_soa_serial(reader, start, rdlength))


def _check_options(rdata: bytes) -> None:
    pos = 0
    while pos < len(rdata):
        if pos + 4 > len(rdata):
            raise _Bad("truncated EDNS option")
        (length,) = struct.unpack("!H", rdata[pos + 2:pos + 4])
        pos += 4 + length
        if pos > len(rdata):
            raise _Bad("truncated EDNS option")


def _soa_serial(reader: _Reader, start: int, rdlength: int) -> int:
    end = reader.pos
    inner = _Reader(reader.data[:start + rdlength])
    inner.pos = start
    inner.name()
    inner.name()
    serial = inner.u32()
    inner.take(16)
    if inner.pos != start + rdlength:
        raise _Bad("SOA with extra data")
    reader.pos = end
    return serial


# --- replies -------------------------------------------------------------------------------


def reply_header(query_ident: int, query_flags: int, rcode: int = 0) -> DNSHeader:
    """A reply's header as ``dns_message_reply`` makes it: QR set, the opcode, RD and CD
    kept, everything else clear."""
    header = DNSHeader(id=query_ident, qr=1, opcode=(query_flags >> OPCODE_SHIFT) & 0xF,
                       rd=int(bool(query_flags & RD)), rcode=rcode & 0xF)
    header.cd = int(bool(query_flags & CD))
    return header


def opt_record(edns: Edns, rcode: int = 0) -> RR:
    """This server's OPT for a reply: version 0, its UDP size, the DO bit copied (RFC 3225
    3) and the upper bits of an extended rcode (RFC 6891 6.1.3)."""
    ttl = ((rcode >> 4) << 24) | (DO_FLAG if edns.do else 0)
    return RR(DNSLabel([]), _OPT, EDNS_SIZE, ttl, [])


def error_reply(ident: int, flags: int, questions: list[DNSQuestion], rcode: int,
                edns: Edns | None = None, ra: bool = False) -> bytes:
    """An error reply: the question when it could be read, an OPT when one is due."""
    header = reply_header(ident, flags, rcode)
    header.ra = int(ra)
    opcode = (flags >> OPCODE_SHIFT) & 0xF
    reply = DNSRecord(header, questions=questions if opcode in (0, 4) else [])
    if edns is not None:
        reply.add_ar(opt_record(edns, rcode))
    return reply.pack()


def _rrsets(records: list[RR]) -> list[list[RR]]:
    out: list[list[RR]] = []
    for rr in records:
        if out and out[-1][0].rname == rr.rname and out[-1][0].rtype == rr.rtype:
            out[-1].append(rr)
        else:
            out.append([rr])
    return out


def render(reply: DNSRecord, limit: int, opt: RR | None = None) -> bytes:
    """``reply`` (plus ``opt``, always kept) packed in at most ``limit`` bytes."""
    full = DNSRecord(reply.header, questions=reply.questions, rr=reply.rr, auth=reply.auth,
                     ar=reply.ar + ([opt] if opt is not None else []))
    packed = full.pack()
    if len(packed) <= limit:
        return packed
    header = DNSHeader(id=reply.header.id, bitmap=reply.header.bitmap, q=0, a=0, auth=0, ar=0)
    fitted = DNSRecord(header, questions=reply.questions, ar=[opt] if opt is not None else [])
    sections = (("rr", reply.rr, True), ("auth", reply.auth, True), ("ar", reply.ar, False))
    for attr, records, required in sections:
        for rrset in _rrsets(records):
            trial = getattr(fitted, attr)
            at = len(trial) - (1 if attr == "ar" and opt is not None else 0)
            trial[at:at] = rrset
            if len(fitted.pack()) > limit:
                del trial[at:at + len(rrset)]
                if required:
                    fitted.header.tc = 1
                    return fitted.pack()
                break
    return fitted.pack()
