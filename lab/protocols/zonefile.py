"""Zone data in standard master-file form: render it, parse it, validate it, look it up.

Parsing is dnslib's ``ZoneParser`` (``$ORIGIN``, ``$TTL``, ``@``, relative names,
parentheses, comments), tightened so that a record dnslib would silently accept or
mangle (``A 999.1.1.1``, an MX without a preference, trailing junk, an unknown type)
fails with a message that quotes the record.

A loaded zone and its lookups live in :mod:`lab.protocols.zonedata`.
"""
from __future__ import annotations

import ipaddress
import re

from dnslib import CLASS, QTYPE, RR, DNSBuffer, DNSLabel, ZoneParser
from dnslib.dns import RDMAP, DNSError

MAX_TTL = 2**31 - 1

# how many rdata tokens a type takes: (min, max); None = no upper bound
_RDATA_ARITY: dict[str, tuple[int, int | None]] = {
    "A": (1, 1), "AAAA": (1, 1), "NS": (1, 1), "CNAME": (1, 1), "PTR": (1, 1),
    "MX": (2, 2), "SOA": (7, 7), "SRV": (4, 4), "TXT": (1, None),
    "CAA": (3, 3), "DS": (4, None),
}
SUPPORTED_TYPES = tuple(_RDATA_ARITY)
_CLASSES = ("IN", "CH", "HS")


class ZoneError(ValueError):
    """A record or a zone that cannot be loaded; the message quotes the offending record."""

    line: int | None = None


def zone_origin(name: str) -> DNSLabel:
    """The zone's origin as an absolute name ('example.net' -> 'example.net.', '.' -> root)."""
    return DNSLabel(name.strip().rstrip(".") or ".")


def zone_file_name(name: str) -> str:
    """The master file's base name, as BIND installs name it: db.example.net, db.root."""
    stem = name.strip().rstrip(".").lower()
    return f"db.{stem or 'root'}"


def _is_int(token: str) -> bool:
    return token.isdigit()


class _StrictParser(ZoneParser):
    """dnslib's ZoneParser with case-insensitive types/classes and strict rdata checks.

    It also counts lines, so an error in a file can say where (``ZoneError.line``).
    """

    def __init__(self, zone: str, origin: DNSLabel, ttl: int) -> None:
        super().__init__(zone, origin=origin, ttl=ttl)
        self.line = 1
        tokens = self.i

        def counting():
            for tok in tokens:
                yield tok
                if tok[0] == "NL":
                    self.line += 1

        self.i = counting()

    def parse_rr(self, rr: list[str]) -> RR:
        # called on the newline that ends the record, before the counter moves past it
        line = self.line
        try:
            return self._parse_rr(rr)
        except ZoneError as e:
            e.line = line
            raise

    def _parse_rr(self, rr: list[str]) -> RR:
        text = " ".join(t for t in rr if t) or "(empty)"
        if rr and rr[0] == "" and not getattr(self, "_had_owner", False):
            raise ZoneError(f"record {text!r}: no owner name (the first record needs one)")
        self._had_owner = True
        tokens = list(rr)
        owner = tokens.pop(0)
        ttl = self.ttl
        rclass = "IN"
        # RFC 1035 allows [ttl] [class] in either order
        for _ in range(2):
            if tokens and _is_ttl(tokens[0]):
                ttl = _ttl_value(tokens.pop(0), text)
            elif tokens and tokens[0].upper() in _CLASSES:
                rclass = tokens.pop(0).upper()
        if not tokens:
            raise ZoneError(f"record {text!r}: missing record type")
        rtype = tokens.pop(0).upper()
        if rtype not in _RDATA_ARITY:
            if rtype in QTYPE.reverse or rtype.startswith("TYPE"):
                raise ZoneError(f"record {text!r}: record type {rtype} is not supported here "
                                f"(supported: {', '.join(SUPPORTED_TYPES)})")
            raise ZoneError(f"record {text!r}: unknown record type {rtype!r}")
        lo, hi = _RDATA_ARITY[rtype]
        if len(tokens) < lo or (hi is not None and len(tokens) > hi):
            want = f"{lo}" if lo == hi else f"at least {lo}" if hi is None else f"{lo}-{hi}"
            raise ZoneError(f"record {text!r}: {rtype} takes {want} data field"
                            f"{'s' if (hi or lo) != 1 else ''}, got {len(tokens)}")
        _check_rdata(rtype, tokens, text)
        try:
            label = self.parse_label(owner)
            record = RR(rname=label, ttl=ttl, rclass=getattr(CLASS, rclass),
                        rtype=getattr(QTYPE, rtype),
                        rdata=RDMAP[rtype].fromZone(tokens, self.origin))
            _check_names(record, text)
            record.pack(DNSBuffer())
        except ZoneError:
            raise
        except UnicodeError:
            raise ZoneError(f"record {text!r}: bad name (empty label, or a label longer "
                            "than 63 characters)") from None
        except (DNSError, ValueError, IndexError, TypeError) as e:
            raise ZoneError(f"record {text!r}: {e}") from None
        return record


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TTL = re.compile(r"^(?:\d+|(?:\d+[smhdw])+)$", re.IGNORECASE)


def ttl_seconds(token: str) -> int | None:
    """A TTL as BIND reads it (``3600``, ``1h``, ``1h30m``, ``2w``) in seconds; None if the
    token is not one."""
    if not _TTL.match(token or ""):
        return None
    if token.isdigit():
        return int(token)
    return sum(int(n) * _UNITS[u.lower()] for n, u in re.findall(r"(\d+)([smhdwSMHDW])", token))


def _is_ttl(token: str) -> bool:
    return ttl_seconds(token) is not None


def _ttl_value(token: str, text: str) -> int:
    value = ttl_seconds(token) or 0
    if value > MAX_TTL:
        raise ZoneError(f"record {text!r}: TTL {token} out of range (max {MAX_TTL})")
    return value


_U8, _U16, _U32 = 255, 65535, 2**32 - 1
# the numeric rdata fields of each type: (token index, largest value)
_NUMERIC: dict[str, tuple[tuple[int, int], ...]] = {
    "MX": ((0, _U16),), "SRV": ((0, _U16), (1, _U16), (2, _U16)),
    "SOA": tuple((i, _U32) for i in range(2, 7)), "CAA": ((0, _U8),),
    "DS": ((0, _U16), (1, _U8), (2, _U8)),
}


def _check_rdata(rtype: str, tokens: list[str], text: str) -> None:
    try:
        if rtype == "A":
            ipaddress.IPv4Address(tokens[0])
        elif rtype == "AAAA":
            ipaddress.IPv6Address(tokens[0])
    except ValueError:
        raise ZoneError(f"record {text!r}: {tokens[0]!r} is not a valid {rtype} address") from None
    for i, limit in _NUMERIC.get(rtype, ()):
        if not _is_ttl(tokens[i]) or (rtype != "SOA" and not tokens[i].isdigit()):
            raise ZoneError(f"record {text!r}: {tokens[i]!r} is not a number")
        if (ttl_seconds(tokens[i]) or 0) > limit:
            raise ZoneError(f"record {text!r}: {tokens[i]!r} out of range (max {limit})")
    if rtype == "DS":
        digest = "".join(tokens[3:])
        if len(digest) % 2 or any(c not in "0123456789abcdefABCDEF" for c in digest):
            raise ZoneError(f"record {text!r}: the DS digest is not hexadecimal")


def _check_names(record: RR, text: str) -> None:
    rd = record.rdata
    names = [record.rname] + [getattr(rd, a) for a in ("label", "mname", "rname", "target")
                              if isinstance(getattr(rd, a, None), DNSLabel)]
    for name in names:
        if any(part == b"" for part in name.label):
            raise ZoneError(f"record {text!r}: bad name {str(name)!r} (empty label)")
        if any(len(part) > 63 for part in name.label):
            raise ZoneError(f"record {text!r}: bad name (a label is longer than 63 characters)")


def parse_records(text: str, origin: str | DNSLabel = ".", ttl: int = 0) -> list[RR]:
    """Parse master-file text (``$ORIGIN``/``$TTL`` allowed) into records; ZoneError if bad."""
    parser = _StrictParser(text, origin=origin if isinstance(origin, DNSLabel) else DNSLabel(origin),
                           ttl=ttl)
    try:
        return list(parser.parse())
    except ZoneError:
        raise
    except (DNSError, ValueError, IndexError, TypeError, StopIteration, UnicodeError) as e:
        raise ZoneError(f"syntax error: {e}") from None


def parse_record(text: str, origin: str | DNSLabel = ".", ttl: int = 0) -> RR:
    """Exactly one record in master-file syntax, relative to ``origin``; ZoneError if bad."""
    if "\n" in text.strip() or text.strip().startswith("$"):
        raise ZoneError(f"record {text!r}: one record per entry, no directives")
    if not text.strip():
        raise ZoneError("empty record")
    if text[:1].isspace():
        raise ZoneError(f"record {text!r}: starts with blank space; give the owner name "
                        "(@ for the zone apex)")
    records = parse_records(text, origin, ttl)
    if len(records) != 1:
        raise ZoneError(f"record {text!r}: expected one record, got {len(records)}")
    return records[0]


def render_zone(name: str, ttl: int, records: list[str]) -> str:
    """The zone's master file: $ORIGIN, $TTL, then the records in aligned columns.

    Records keep the owner and data as written (relative names stay relative); the
    class is always written out. The result parses back to the same records.
    """
    origin = zone_origin(name)
    lines = [f"$ORIGIN {origin}", f"$TTL {ttl}"]
    rows = []
    for text in records:
        rr = parse_record(text, origin, ttl)  # validates; raises ZoneError
        tokens = text.split(";", 1)[0].split() if '"' not in text else _split_keep_quotes(text)
        owner = tokens.pop(0)
        rec_ttl = ""
        for _ in range(2):
            if tokens and _is_ttl(tokens[0]):
                rec_ttl = tokens.pop(0)
            elif tokens and tokens[0].upper() in _CLASSES:
                tokens.pop(0)
        rtype = tokens.pop(0).upper()
        rows.append((owner, rec_ttl, CLASS.get(rr.rclass), rtype, " ".join(tokens)))
    width = max([len(r[0]) for r in rows] + [1])
    for owner, rec_ttl, rclass, rtype, data in rows:
        lines.append(f"{owner:<{width}} {rec_ttl:<6} {rclass:<2} {rtype:<5} {data}".rstrip())
    return "\n".join(lines) + "\n"


def _split_keep_quotes(text: str) -> list[str]:
    """Split on blanks, keeping "quoted strings" (with their quotes) as one token."""
    out, cur, quoted = [], "", False
    for ch in text:
        if ch == '"':
            quoted = not quoted
            cur += ch
        elif ch.isspace() and not quoted:
            if cur:
                out.append(cur)
            cur = ""
        elif ch == ";" and not quoted:
            break
        else:
            cur += ch
    if cur:
        out.append(cur)
    return out
