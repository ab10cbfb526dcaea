"""SMTP on the wire, as Postfix's smtpd reads it: lines, addresses and parameters.

Pure helpers (no I/O but ``read_line``), shared by the lab's SMTP server engine
(:mod:`lab.protocols.smtpd`). The limits are Postfix's defaults: ``line_length_limit``
2048 for commands (the rest of a longer command line is skipped, Postfix 3.7 answers
the truncated command) and no limit on the length of a message line (Postfix stores long
lines in pieces of 2048 and joins them again on delivery).
"""
from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

LINE_LENGTH_LIMIT = 2048  # Postfix line_length_limit
READ_CHUNK = 65536


async def read_line(reader: asyncio.StreamReader, keep: int | None = None) -> tuple[bytes, int]:
    """One line without its LF (a CR before it is dropped, a bare LF ends it as well, as
    Postfix 3.7 does by default), and the number of bytes it took on the wire.

    ``keep`` caps how much of the line is returned (the rest is read and dropped).
    Raises ``EOFError`` when the peer closes before a full line.
    """
    parts: list[bytes] = []
    kept = 0
    total = 0
    while True:
        try:
            chunk = await reader.readuntil(b"\n")
            done = True
        except asyncio.LimitOverrunError as e:
            chunk = await reader.readexactly(max(1, min(e.consumed, READ_CHUNK)))
            done = False
        except asyncio.IncompleteReadError as e:
            raise EOFError(e.partial) from None
        total += len(chunk)
        if keep is None or kept < keep:
            piece = chunk if keep is None else chunk[: keep - kept]
            parts.append(piece)
            kept += len(piece)
        if done:
            break
    line = b"".join(parts)
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    return line, total


SPACE = " \t\n\r\f\v"  # C isspace()


@dataclass(frozen=True)
class Token:
    """One word of a command line as Postfix's smtpd_token splits it; ``ok`` is False when
    a ``<`` or ``"`` was never closed."""

    text: str
    ok: bool = True


def _quoted(line: str, i: int, buf: list[str]) -> tuple[int, bool]:
    """From just after an opening ``<`` or ``"`` (already in ``buf``) to its match; ``<``
    nest inside ``<>``, a quote inside either must close first, ``\\`` escapes."""
    wanted = [">" if buf[-1] == "<" else '"']
    while i < len(line):
        c = line[i]
        i += 1
        buf.append(c)
        if c == "\\":
            if i >= len(line):
                break
            buf.append(line[i])
            i += 1
        elif c == wanted[-1]:
            if len(wanted) == 1:
                return i, True
            wanted.pop()
        elif c == '"':
            wanted.append('"')
        elif c == "<" and wanted[-1] == ">":
            wanted.append(">")
    return i, False


def tokenize(line: str) -> list[Token]:
    """Postfix's smtpd_token: words split on white space, ``<...>`` and ``"..."`` kept
    whole, and ``FROM:`` / ``TO:`` ending a word (``MAIL FROM:<a@b>`` is three words)."""
    line = line.split("\0", 1)[0]  # C strings end at NUL
    out: list[Token] = []
    i = 0
    while True:
        buf: list[str] = []
        ok = True
        while i < len(line):
            c = line[i]
            i += 1
            if c in SPACE:
                while i < len(line) and line[i] in SPACE:
                    i += 1
                if buf:
                    break
            elif c in "<\"":
                buf.append(c)
                i, closed = _quoted(line, i, buf)
                ok = ok and closed
            elif c == ":":
                buf.append(c)
                if "".join(buf).lower() in ("to:", "from:"):
                    break
            else:
                if c == "\\" and i < len(line):
                    buf.append(c)
                    c = line[i]
                    i += 1
                buf.append(c)
        if not buf:
            return out
        out.append(Token("".join(buf), ok))


def _address_words(text: str) -> list[str]:
    """The words of an RFC 822 address list, as far as counting them goes: brackets,
    commas and white space separate, quoted strings and escapes stay, comments go."""
    words: list[str] = []
    buf: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        i += 1
        if c == '"':
            j = i
            while j < len(text) and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            buf.append(text[i - 1:j + 1])
            i = j + 1
        elif c == "(":
            depth = 1
            while i < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
        elif c == "\\":
            buf.append(text[i - 1:i + 1])
            i += 1
        elif c in SPACE or c in "<>,;":
            if buf:
                words.append("".join(buf))
                buf = []
        else:
            buf.append(c)
    if buf:
        words.append("".join(buf))
    return words


def extract_address(token: Token) -> str | None:
    """The address in a MAIL FROM / RCPT TO / VRFY argument, as Postfix's extract_addr
    finds it (sloppy, its default): one layer of ``<>`` and a source route dropped, then
    exactly one address or none (``""``); None when the syntax is wrong."""
    if not token.ok:
        return None
    text = token.text
    if len(text) >= 2 and text[0] == "<" and text[-1] == ">":
        text = text[1:-1]
    if text.startswith("@") and ":" in text:
        text = text.split(":", 1)[1]
    words = _address_words(text)
    if len(words) > 1:
        return None
    return words[0] if words else ""


def valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


FORBIDDEN = ("CONNECT", "GET", "POST")  # smtpd_forbid_commands, with /^[^A-Z]/


def forbidden(verb: str) -> bool:
    """A verb that shows the client is not talking SMTP (Postfix's smtpd_forbid_commands
    default, and a mail header sent as a command)."""
    return (verb.upper() in FORBIDDEN or not verb[:1].isascii() or not verb[:1].isalpha()
            or re.fullmatch(r"[!-9;-~]+:", verb) is not None)


def printable(text: str) -> str:
    """Postfix's log sanitizer: anything but printable ASCII becomes ``?``."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)
