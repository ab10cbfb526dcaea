"""Zone transfers as BIND 9.18 serves them (its ``ns_xfr_start``), for a zone without a
journal.

In BIND's order: a zone not served here is NOTAUTH; an IXFR carrying several SOAs is
FORMERR; a client outside the zone's ``allow_transfer`` is REFUSED; AXFR over UDP is
FORMERR; an IXFR without a SOA is FORMERR; an IXFR over UDP, or from a serial not older
than the zone's (RFC 1982 arithmetic), gets the single current SOA; anything else gets
the whole zone, SOA first and last (RFC 5936), an IXFR too ("AXFR-style IXFR", RFC 1995
4: no journal to take differences from).

Over TCP the answer is split into messages of about ``MESSAGE_SIZE`` bytes, the question
in the first only, each with AA set and an OPT if the request had one.
"""
from __future__ import annotations

from dataclasses import dataclass

from dnslib import QTYPE, RR, DNSBuffer, DNSHeader, DNSRecord

from lab.protocols.dnswire import FORMERR, Query, error_reply, opt_record
from lab.protocols.zonedata import ZoneData

REFUSED, NOTAUTH = 5, 9
MESSAGE_SIZE = 20480  # BIND's transfer-message-size


@dataclass
class Transfer:
    """The reply messages and what BIND would log about them (xfer-out)."""

    messages: list[bytes]
    log: str


def serial_ge(a: int, b: int) -> bool:
    """``a >= b`` in serial-number arithmetic (RFC 1982)."""
    return a == b or 0 < ((a - b) & 0xFFFFFFFF) < 0x80000000


def transfer(query: Query, zone: ZoneData | None, allowed: bool, tcp: bool,
             ra: bool, client: str) -> Transfer:
    """Answer an AXFR or IXFR ``query`` for ``zone`` (None: not served here)."""
    question = query.questions[0]
    kind = "AXFR" if question.qtype == QTYPE.AXFR else "IXFR"
    name = str(question.qname).rstrip(".") or "."
    who = f"client {client} ({name})"

    def fail(rcode: int, why: str) -> Transfer:
        reply = error_reply(query.ident, query.flags, query.questions, rcode, query.edns, ra)
        return Transfer([reply], f"{who}: {why}")

    if zone is None:
        return fail(NOTAUTH, f"bad zone transfer request: '{name}/IN': non-authoritative "
                             "zone (NOTAUTH)")
    serials = query.soa_serials.get(zone.origin, [])
    if len(serials) > 1:
        return fail(FORMERR, "bad zone transfer request: IXFR authority section has "
                             "multiple SOAs (FORMERR)")
    if not allowed:
        return fail(REFUSED, f"zone transfer '{name}/{kind}/IN' denied")
    if kind == "AXFR" and not tcp:
        return fail(FORMERR, "bad zone transfer request: attempted AXFR over UDP (FORMERR)")
    if kind == "IXFR" and not serials:
        return fail(FORMERR, "bad zone transfer request: IXFR request missing SOA (FORMERR)")
    if kind == "IXFR" and (not tcp or serial_ge(serials[0], zone.serial)):
        message = _message(query, [zone.soa], first=True, tcp=tcp, ra=ra)
        return Transfer([message], f"{who}: transfer of '{name}/IN': IXFR poll up to date")
    records = [zone.soa] + [rr for rr in zone.records if rr is not zone.soa] + [zone.soa]
    messages = [_message(query, chunk, first=i == 0, tcp=True, ra=ra)
                for i, chunk in enumerate(_chunks(records))]
    style = "AXFR" if kind == "AXFR" else "AXFR-style IXFR"
    size = sum(len(m) for m in messages)
    return Transfer(messages, f"{who}: transfer of '{name}/IN': {style} ended: "
                              f"{len(messages)} messages, {len(records)} records, {size} bytes "
                              f"(serial {zone.serial})")


def _chunks(records: list[RR]) -> list[list[RR]]:
    """Records split as BIND fills its messages: until one holds ``MESSAGE_SIZE`` bytes."""
    chunks: list[list[RR]] = [[]]
    used = 0
    for rr in records:
        if used >= MESSAGE_SIZE:
            chunks.append([])
            used = 0
        buffer = DNSBuffer()
        rr.pack(buffer)
        used += len(buffer.data)
        chunks[-1].append(rr)
    return chunks


def _message(query: Query, records: list[RR], first: bool, tcp: bool, ra: bool) -> bytes:
    if tcp:  # a fresh message: QR and AA (RA if the client may recurse), nothing copied
        header = DNSHeader(id=query.ident, qr=1, aa=1, ra=int(ra))
    else:  # the request turned into its reply: RD and CD kept, no AA (as BIND's UDP path)
        header = DNSHeader(id=query.ident, qr=1, rd=int(query.rd), ra=int(ra))
        header.cd = int(query.cd)
    reply = DNSRecord(header, questions=query.questions if first else [], rr=list(records))
    if query.edns is not None:
        reply.add_ar(opt_record(query.edns))
    return reply.pack()
