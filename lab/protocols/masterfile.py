"""BIND master files as an admin writes them, read and edited in place.

``read_master`` follows a zone's master file the way named does: ``$ORIGIN``, ``$TTL``,
``$INCLUDE file [origin]`` (the origin and the current owner revert after the included
file, RFC 1035 5.1), records spread over several lines in parentheses, owners left blank
(the previous owner), comments after ``;``. Every record becomes an :class:`Entry` that
knows the file and lines it was written on and where each of its tokens sits, so that an
edit changes only those characters: comments, layout and the other records stay exactly
as written (``Master.set_data``, ``delete``, ``insert_after``, ``bump_serial``).

What each record *means* is checked by :func:`lab.protocols.zonefile.parse_record`, one
record at a time; an error names the file and line (``db.example.org:12: record ...``).
``$INCLUDE`` names a file relative to the directory of the main file (in a node,
``/etc/bind``; ``named-checkzone -w /etc/bind`` reads it the same way); absolute paths and
``..`` are refused, so a zone can only include files that travel with it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from dnslib import RR

from lab.protocols.zonefile import ZoneError, parse_record, ttl_seconds

MAX_INCLUDES = 16  # files one zone may include, in all
MAX_DEPTH = 4  # $INCLUDE inside $INCLUDE ...
CLASSES = ("IN", "CH", "HS")

Include = Callable[[str], str]  # a path as written in $INCLUDE -> that file's text


@dataclass(frozen=True)
class Token:
    text: str
    line: int  # index of the line in its file
    start: int  # column of the first character
    end: int  # column after the last character


@dataclass
class Entry:
    """One record as written: its file, its lines, and its parts."""

    file: str  # "" for the main file, else the path as written in $INCLUDE
    first: int
    last: int
    origin: str  # the $ORIGIN in effect, absolute and lower case
    default_ttl: int | None  # the $TTL in effect
    owner: str  # absolute, lower case
    owner_token: Token | None  # None: the owner was left blank (the previous one)
    head: list[Token]  # TTL and class as written
    type_token: Token
    data_tokens: list[Token]

    @property
    def rtype(self) -> str:
        return self.type_token.text.upper()

    @property
    def data(self) -> str:
        """The data fields joined by one blank, as written (relative names stay relative)."""
        return " ".join(t.text for t in self.data_tokens)

    def text(self) -> str:
        """The record on one line, owner as written (absolute when it was left blank)."""
        owner = self.owner_token.text if self.owner_token else self.owner
        return " ".join([owner, *(t.text for t in self.head), self.type_token.text, self.data])

    def record(self, fallback_ttl: int) -> RR:
        ttl = self.default_ttl if self.default_ttl is not None else fallback_ttl
        return parse_record(self.text(), self.origin, ttl)


def absolute(name: str, origin: str) -> str:
    """``name`` as written relative to ``origin``, absolute and lower case."""
    name = name.strip().lower()
    origin = origin.strip().lower().rstrip(".") + "."
    if name == "@":
        return origin
    if name.endswith("."):
        return name
    return f"{name}.{origin}" if origin != "." else f"{name}."


def relative(name: str, origin: str) -> str:
    """An absolute name written the way a master file under ``origin`` would write it."""
    name, origin = absolute(name, "."), absolute(origin, ".")
    if name == origin:
        return "@"
    if origin != "." and name.endswith("." + origin):
        return name[: -len(origin) - 1]
    return name


def tokens_of(line: str, number: int) -> tuple[list[Token], int]:
    """The tokens of one line (quotes kept, comment dropped) and its parenthesis balance."""
    out: list[Token] = []
    depth = 0
    i, n = 0, len(line)
    while i < n:
        ch = line[i]
        if ch == ";":
            break
        if ch in " \t\r":
            i += 1
            continue
        if ch in "()":
            depth += 1 if ch == "(" else -1
            i += 1
            continue
        start = i
        quoted = False
        while i < n and (quoted or line[i] not in " \t\r;()"):
            if line[i] == "\\" and i + 1 < n:
                i += 2
                continue
            if line[i] == '"':
                quoted = not quoted
            i += 1
        out.append(Token(line[start:i], number, start, i))
    return out, depth


@dataclass
class _State:
    origin: str
    ttl: int | None
    owner: str | None = None


@dataclass
class Master:
    """A zone's master file and the files it includes, as lines, and the records in them."""

    zone: str  # absolute, lower case
    files: dict[str, list[str]]  # "" is the main file
    entries: list[Entry] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # file -> name for messages
    changed: set[str] = field(default_factory=set)

    # --- reading ---------------------------------------------------------------------
    def parse(self) -> None:
        self.entries = []
        state = _State(self.zone, None)
        self._read("", state, 0, [0])

    def _read(self, file: str, state: _State, depth: int, count: list[int]) -> None:
        lines = self.files[file]
        i = 0
        while i < len(lines):
            tokens, balance = tokens_of(lines[i], i)
            first = i
            while balance > 0 and i + 1 < len(lines):
                i += 1
                more, b = tokens_of(lines[i], i)
                tokens += more
                balance += b
            if balance != 0:
                raise self._error(file, first, "unbalanced parentheses")
            if tokens:
                blank = lines[first][:1] in (" ", "\t")
                if tokens[0].text.startswith("$") and not blank:
                    self._directive(file, first, tokens, state, depth, count)
                else:
                    self.entries.append(self._entry(file, first, i, tokens, blank, state))
            i += 1

    def _directive(self, file: str, line: int, tokens: list[Token], state: _State,
                   depth: int, count: list[int]) -> None:
        word = tokens[0].text.upper()
        args = [t.text for t in tokens[1:]]
        if word == "$ORIGIN" and len(args) == 1:
            state.origin = absolute(args[0], state.origin)
        elif word == "$TTL" and len(args) == 1:
            value = ttl_seconds(args[0])
            if value is None:
                raise self._error(file, line, f"$TTL {args[0]!r} is not a TTL")
            state.ttl = value
        elif word == "$INCLUDE" and len(args) in (1, 2):
            self._include(file, line, args, state, depth, count)
        elif word in ("$ORIGIN", "$TTL", "$INCLUDE"):
            raise self._error(file, line, f"{word}: wrong number of arguments")
        else:
            raise self._error(file, line, f"directive {word} is not supported")

    def _include(self, file: str, line: int, args: list[str], state: _State, depth: int,
                 count: list[int]) -> None:
        path = args[0].strip('"')
        if not safe_include(path):
            raise self._error(file, line, f"$INCLUDE {path}: only files beside the zone "
                                          "file (a relative path without '..')")
        if depth >= MAX_DEPTH or count[0] >= MAX_INCLUDES:
            raise self._error(file, line, f"$INCLUDE {path}: too many included files")
        if path not in self.files:
            raise self._error(file, line, f"$INCLUDE {path}: file not found")
        count[0] += 1
        inner = _State(absolute(args[1], state.origin) if len(args) == 2 else state.origin,
                       state.ttl, state.owner)
        self._read(path, inner, depth + 1, count)
        state.ttl = inner.ttl  # named keeps the $TTL, reverts origin and owner

    def _entry(self, file: str, first: int, last: int, tokens: list[Token], blank: bool,
               state: _State) -> Entry:
        rest = list(tokens)
        owner_token = None if blank else rest.pop(0)
        if owner_token is not None:
            state.owner = absolute(owner_token.text, state.origin)
        if state.owner is None:
            text = " ".join(t.text for t in tokens)
            raise self._error(file, first, f"record {text!r}: no owner name (the first "
                                           "record needs one)")
        head: list[Token] = []
        for _ in range(2):
            if rest and (ttl_seconds(rest[0].text) is not None
                         or rest[0].text.upper() in CLASSES):
                head.append(rest.pop(0))
        if not rest:
            text = " ".join(t.text for t in tokens)
            raise self._error(file, first, f"record {text!r}: missing record type")
        return Entry(file, first, last, state.origin, state.ttl, state.owner, owner_token,
                     head, rest[0], rest[1:])

    def _error(self, file: str, line: int, message: str) -> ZoneError:
        name = self.names.get(file, file)
        err = ZoneError(f"{name}:{line + 1}: {message}" if name else message)
        err.line = line + 1
        return err

    def records(self, fallback_ttl: int) -> list[RR]:
        """Every record, checked; a ZoneError names the file and line of a bad one."""
        out = []
        for entry in self.entries:
            try:
                out.append(entry.record(fallback_ttl))
            except ZoneError as e:
                raise self._error(entry.file, entry.first, str(e)) from None
        return out

    def find(self, owner: str, rtype: str) -> list[Entry]:
        """The records of ``owner`` (absolute) and ``rtype``."""
        name, rtype = absolute(owner, "."), rtype.upper()
        return [e for e in self.entries if e.owner == name and e.rtype == rtype]

    # --- editing -----------------------------------------------------------------------
    def _set_line(self, file: str, index: int, text: str) -> None:
        self.files[file][index] = text
        self.changed.add(file)

    def set_data(self, entry: Entry, data: str) -> None:
        """Give ``entry`` new data fields. Same number of fields: each is replaced where it
        stands (a multi-line record keeps its layout and comments); otherwise the fields
        are written where the first one stood and the others removed."""
        new = data.split()
        old = entry.data_tokens
        if len(new) == len(old):
            for token, text in sorted(zip(old, new), key=lambda p: (p[0].line, -p[0].start)):
                self._splice(entry.file, token.line, token.start, token.end, text)
        elif old and all(t.line == old[0].line for t in old):
            self._splice(entry.file, old[0].line, old[0].start, old[-1].end, " ".join(new))
        else:
            self._rewrite(entry, data)
        self.parse()

    def _splice(self, file: str, line: int, start: int, end: int, text: str) -> None:
        current = self.files[file][line]
        self._set_line(file, line, current[:start] + text + current[end:])

    def _rewrite(self, entry: Entry, data: str) -> None:
        """The whole record on one line (a multi-line record whose field count changes)."""
        lines = self.files[entry.file]
        owner = entry.owner_token.text if entry.owner_token else ""
        head = " ".join(t.text for t in entry.head)
        text = f"{owner}\t{head} {entry.type_token.text} {data}".replace("\t ", "\t")
        lines[entry.first:entry.last + 1] = [text]
        self.changed.add(entry.file)

    def delete(self, entry: Entry) -> None:
        """Remove the record's lines; a record after it that left its owner blank gets the
        owner written out, so that it keeps meaning what it meant."""
        following = self._next_in_file(entry)
        if following is not None and following.owner_token is None \
                and entry.owner_token is not None:
            self._name_owner(following, following.owner)
        del self.files[entry.file][entry.first:entry.last + 1]
        self.changed.add(entry.file)
        self.parse()

    def insert_after(self, anchor: Entry | None, owner: str, rtype: str, data: str) -> None:
        """Add a record after ``anchor`` (at the end of the main file if None), written
        relative to the origin in effect there, in the columns of the records around it."""
        file = anchor.file if anchor else ""
        origin = anchor.origin if anchor else self._last_origin()
        name = absolute(owner, ".")
        if anchor is not None:
            following = self._next_in_file(anchor)
            if following is not None and following.owner_token is None \
                    and following.owner != name:
                self._name_owner(following, following.owner)
        text = self._like(anchor, name, rtype, data) if anchor else None
        if text is None:
            width = max([len(e.owner_token.text) for e in self.entries
                         if e.owner_token and e.file == file] + [1])
            text = f"{relative(name, origin):<{width}} IN {rtype.upper():<5} {data}".rstrip()
        index = anchor.last + 1 if anchor else len(self.files[file])
        self.files[file].insert(index, text)
        self.changed.add(file)
        self.parse()

    def _like(self, anchor: Entry, owner: str, rtype: str, data: str) -> str | None:
        """A record of the anchor's owner written in the anchor's own columns (its owner
        left blank or repeated as it was, its class, no TTL of its own); None when the
        anchor is of another owner, spans lines or has a TTL."""
        if anchor.owner != owner or anchor.first != anchor.last or not anchor.data_tokens \
                or any(ttl_seconds(t.text) is not None for t in anchor.head):
            return None
        line = self.files[anchor.file][anchor.first]
        typed = anchor.data_tokens[0].start - anchor.type_token.start
        return f"{line[:anchor.type_token.start]}{rtype.upper():<{typed}}{data}"

    def _next_in_file(self, entry: Entry) -> Entry | None:
        later = [e for e in self.entries if e.file == entry.file and e.first > entry.last]
        return min(later, key=lambda e: e.first) if later else None

    def _name_owner(self, entry: Entry, owner: str) -> None:
        line = self.files[entry.file][entry.first]
        self._set_line(entry.file, entry.first, relative(owner, entry.origin) + line)

    def _last_origin(self) -> str:
        main = [e for e in self.entries if e.file == ""]
        return main[-1].origin if main else self.zone

    def bump_serial(self) -> bool:
        """Add one to the SOA serial where it is written (modulo 2**32)."""
        for entry in self.find(self.zone, "SOA"):
            if len(entry.data_tokens) >= 3 and entry.data_tokens[2].text.isdigit():
                token = entry.data_tokens[2]
                serial = str((int(token.text) + 1) % 2**32)
                self._splice(entry.file, token.line, token.start, token.end, serial)
                self.parse()
                return True
        return False

    def serial(self) -> int | None:
        for entry in self.find(self.zone, "SOA"):
            if len(entry.data_tokens) >= 3 and entry.data_tokens[2].text.isdigit():
                return int(entry.data_tokens[2].text)
        return None

    def text(self, file: str = "") -> str:
        return "\n".join(self.files[file]) + "\n"


def safe_include(path: str) -> bool:
    """A relative path without ``..``: a file that travels with the zone."""
    p = PurePosixPath(path)
    return bool(path) and not p.is_absolute() and ".." not in p.parts and "\0" not in path


def included_paths(text: str) -> list[str]:
    """The files a master file's ``$INCLUDE`` lines name, in order (not followed)."""
    out = []
    for number, line in enumerate(text.splitlines()):
        tokens, _ = tokens_of(line, number)
        if tokens and tokens[0].text.upper() == "$INCLUDE" and len(tokens) > 1 \
                and line[:1] not in (" ", "\t"):
            out.append(tokens[1].text.strip('"'))
    return out


def collect_includes(text: str, read: Include, name: str = "") -> dict[str, str]:
    """Every file a master file includes, directly or not (path as written -> text), read
    with ``read``; a ZoneError for a path that leaves the zone's directory, a file that
    cannot be read, or too many of them."""
    out: dict[str, str] = {}
    todo = [(name, text, 0)]
    while todo:
        where, body, depth = todo.pop()
        for path in included_paths(body):
            if path in out:
                continue
            if not safe_include(path):
                raise ZoneError(f"{where}: $INCLUDE {path}: only files beside the zone file "
                                "(a relative path without '..')")
            if depth >= MAX_DEPTH or len(out) >= MAX_INCLUDES:
                raise ZoneError(f"{where}: $INCLUDE {path}: too many included files")
            try:
                out[path] = read(path)
            except OSError as e:
                raise ZoneError(f"{where}: $INCLUDE {path}: {e.strerror or e}") from None
            todo.append((path, out[path], depth + 1))
    return out


def read_master(zone: str, text: str, includes: dict[str, str] | None = None,
                name: str = "") -> Master:
    """The master file ``text`` of ``zone`` with its ``includes`` (path as written ->
    text); a ZoneError (file and line) if its structure is bad."""
    files = {"": text.splitlines()}
    files.update({p: t.splitlines() for p, t in (includes or {}).items()})
    master = Master(absolute("@", zone), files, names={"": name})
    master.names.update({p: p for p in includes or {}})
    master.parse()
    return master


def load_records(zone: str, text: str, includes: dict[str, str] | None = None,
                 fallback_ttl: int = 0, name: str = "") -> list[RR]:
    """Every record of a master file (and what it includes), checked."""
    return read_master(zone, text, includes, name).records(fallback_ttl)
