"""SMTP on the wire, as Postfix's smtpd reads it: lines, addresses and parameters.

Pure helpers (no I/O but ``read_line``), shared by the lab's SMTP server engine
(:mod:`lab.services.smtpd`). The limits are Postfix's defaults: ``line_length_limit``
2048 for commands (the rest of a longer command line is skipped, Postfix 3.7 answers
the truncated command) and no limit on the length of a message line (Postfix stores long
lines in pieces of 2048 and joins them again on delivery).
"""
from __future__ import annotations

import asyncio
import re

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


_PATH = re.compile(r"^\s*<([^<>]*)>(.*)$")


def parse_path(arg: str, keyword: str) -> tuple[str, list[str]] | None:
    """``FROM:<a@b> SIZE=10`` -> ('a@b', ['SIZE=10']); None when the syntax is wrong.

    Postfix also takes an address without brackets (``rcpt to: jsmith``).
    """
    head, sep, rest = arg.partition(":")
    if not sep or head.strip().upper() != keyword:
        return None
    m = _PATH.match(rest)
    if m:
        address, params = m.group(1).strip(), m.group(2).split()
    else:
        fields = rest.split()
        if not fields:
            return None
        address, params = fields[0], fields[1:]
        if "<" in address or ">" in address:
            return None
    if any(c.isspace() or ord(c) < 32 for c in address):
        return None
    return address, params


def split_command(line: str) -> tuple[str, str]:
    """('MAIL', 'FROM:<a@b>') from ``mail FROM:<a@b>``; ('', '') for a blank line."""
    stripped = line.strip()
    if not stripped:
        return "", ""
    verb, _, arg = stripped.partition(" ")
    return verb.upper(), arg.strip()


def printable(text: str) -> str:
    """Postfix's log sanitizer: anything but printable ASCII becomes ``?``."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)
