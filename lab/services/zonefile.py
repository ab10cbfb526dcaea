"""Zone data in standard master-file form: render it, parse it, validate it, look it up.

Parsing is dnslib's ``ZoneParser`` (``$ORIGIN``, ``$TTL``, ``@``, relative names,
parentheses, comments), tightened so that a record dnslib would silently accept or
mangle (``A 999.1.1.1``, an MX without a preference, trailing junk, an unknown type)
fails with a message that quotes the record.

``ZoneData`` holds one loaded zone and answers authoritative lookups (answer, CNAME,
referral with glue, NODATA, NXDOMAIN) the way BIND does for a plain unsigned zone.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from dnslib import CLASS, QTYPE, RR, DNSBuffer, DNSLabel, ZoneParser
from dnslib.dns import RDMAP, DNSError, parse_time

MAX_TTL = 2**31 - 1

# how many rdata tokens a type takes: (min, max); None = no upper bound
_RDATA_ARITY: dict[str, tuple[int, int | None]] = {
    "A": (1, 1), "AAAA": (1, 1), "NS": (1, 1), "CNAME": (1, 1), "PTR": (1, 1),
    "MX": (2, 2), "SOA": (7, 7), "SRV": (4, 4), "TXT": (1, None),
    "CAA": (3, 3),
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


def _is_ttl(token: str) -> bool:
    if not token:
        return False
    body = token[:-1] if token[-1].lower() in "smhdw" else token
    return body.isdigit()


def _ttl_value(token: str, text: str) -> int:
    value = parse_time(token)
    if value > MAX_TTL:
        raise ZoneError(f"record {text!r}: TTL {token} out of range (max {MAX_TTL})")
    return value


def _check_rdata(rtype: str, tokens: list[str], text: str) -> None:
    try:
        if rtype == "A":
            ipaddress.IPv4Address(tokens[0])
        elif rtype == "AAAA":
            ipaddress.IPv6Address(tokens[0])
    except ValueError:
        raise ZoneError(f"record {text!r}: {tokens[0]!r} is not a valid {rtype} address") from None
    numeric = {"MX": [0], "SRV": [0, 1, 2], "SOA": [2, 3, 4, 5, 6], "CAA": [0]}.get(rtype, [])
    for i in numeric:
        if not _is_ttl(tokens[i]) or (rtype != "SOA" and not tokens[i].isdigit()):
            raise ZoneError(f"record {text!r}: {tokens[i]!r} is not a number")
        limit = 2**32 - 1 if rtype == "SOA" else 255 if rtype == "CAA" else 65535
        if parse_time(tokens[i]) > limit:
            raise ZoneError(f"record {text!r}: {tokens[i]!r} out of range (max {limit})")


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


# --- a loaded zone and its lookups ---------------------------------------------------------


@dataclass
class Lookup:
    """An authoritative lookup result, ready to copy into a reply."""

    rcode: int = 0  # RCODE.NOERROR
    aa: bool = True
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)
    referral: bool = False
    # set when a CNAME chain leaves the zone: the name a resolver should continue with
    continue_with: DNSLabel | None = None


class ZoneData:
    """One zone's records, indexed by owner and type."""

    def __init__(self, name: str, records: list[RR]) -> None:
        self.name = name
        self.origin = zone_origin(name)
        self.nodes: dict[DNSLabel, dict[int, list[RR]]] = {}
        for rr in records:
            self.nodes.setdefault(rr.rname, {}).setdefault(rr.rtype, []).append(rr)
        self._validate(records)
        self.soa: RR = self.nodes[self.origin][QTYPE.SOA][0]
        # every name that exists, including empty non-terminals
        self.existing: set[DNSLabel] = set()
        for owner in self.nodes:
            labels = owner.label
            for i in range(len(labels) - len(self.origin.label) + 1):
                self.existing.add(DNSLabel(labels[i:]))
        self.cuts = {n for n, types in self.nodes.items()
                     if n != self.origin and QTYPE.NS in types}

    @property
    def serial(self) -> int:
        return self.soa.rdata.times[0]

    def _validate(self, records: list[RR]) -> None:
        where = f"zone {self.origin}"
        for rr in records:
            if not self.contains(rr.rname):
                shown = " ".join(rr.toZone().split())
                raise ZoneError(f"{where}: record '{shown}' is outside the zone")
        apex = self.nodes.get(self.origin, {})
        soas = apex.get(QTYPE.SOA, [])
        if len(soas) != 1:
            raise ZoneError(f"{where}: has {len(soas)} SOA records at the apex (needs exactly 1)")
        for owner, types in self.nodes.items():
            if owner != self.origin and QTYPE.SOA in types:
                raise ZoneError(f"{where}: SOA record for {owner} is not at the zone apex")
        if QTYPE.NS not in apex:
            raise ZoneError(f"{where}: has no NS records at the apex")
        for owner, types in self.nodes.items():
            if QTYPE.CNAME in types and (len(types) > 1 or len(types[QTYPE.CNAME]) > 1):
                raise ZoneError(f"{where}: {owner} has a CNAME and other data")

    def contains(self, name: DNSLabel) -> bool:
        return name.matchSuffix(self.origin) if self.origin.label else True

    def rrset(self, name: DNSLabel, rtype: int) -> list[RR]:
        return list(self.nodes.get(name, {}).get(rtype, []))

    def _negative_soa(self) -> RR:
        soa = self.soa
        ttl = min(soa.ttl, soa.rdata.times[4])
        return RR(soa.rname, QTYPE.SOA, soa.rclass, ttl, soa.rdata)

    def _addresses(self, names: list[DNSLabel]) -> list[RR]:
        out: list[RR] = []
        for name in names:
            if self.contains(name):
                out += self.rrset(name, QTYPE.A) + self.rrset(name, QTYPE.AAAA)
        return out

    def _cut_for(self, qname: DNSLabel) -> DNSLabel | None:
        """The highest delegation point at or above qname, if any."""
        labels = qname.label
        for i in range(len(labels) - len(self.origin.label) - 1, -1, -1):
            candidate = DNSLabel(labels[i:])
            if candidate in self.cuts:
                return candidate
        return None

    def lookup(self, qname: DNSLabel, qtype: int) -> Lookup:
        result = Lookup()
        seen: set[DNSLabel] = set()
        name = qname
        while True:
            cut = self._cut_for(name)
            if cut is not None:
                if result.answer:  # CNAME into a delegated child: let a resolver finish it
                    result.continue_with = name
                    return result
                ns = self.rrset(cut, QTYPE.NS)
                return Lookup(aa=False, referral=True, authority=ns,
                              additional=self._addresses([r.rdata.label for r in ns]))
            types = self.nodes.get(name)
            if types is None:
                if name in self.existing:  # empty non-terminal
                    result.authority = [self._negative_soa()]
                    return result
                result.rcode = 3  # NXDOMAIN
                result.authority = [self._negative_soa()]
                return result
            if qtype == QTYPE.ANY:
                found = [rr for rrs in types.values() for rr in rrs]
            else:
                found = list(types.get(qtype, []))
            if found:
                result.answer += found
                targets = [r.rdata.label for r in found if r.rtype in (QTYPE.MX, QTYPE.NS)]
                targets += [r.rdata.target for r in found if r.rtype == QTYPE.SRV]
                result.additional = self._addresses(targets)
                return result
            cname = types.get(QTYPE.CNAME)
            if cname:
                result.answer += cname
                target = cname[0].rdata.label
                if target in seen or len(seen) > 8:
                    return result
                seen.add(name)
                if not self.contains(target):
                    result.continue_with = target
                    return result
                name = target
                continue
            result.authority = [self._negative_soa()]  # NODATA
            return result


def load_zone(name: str, text: str, default_ttl: int = 0, filename: str = "") -> ZoneData:
    """Parse a whole master file for zone ``name``; ZoneError with the reason if it is bad.

    With ``filename``, a record error reads like BIND's: ``db.example.net:7: record ...``.
    """
    try:
        records = parse_records(text, zone_origin(name), default_ttl)
    except ZoneError as e:
        if filename and e.line:
            raise ZoneError(f"{filename}:{e.line}: {e}") from None
        raise
    if not records:
        raise ZoneError(f"zone {zone_origin(name)}: no records")
    return ZoneData(name, records)
