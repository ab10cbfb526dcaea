"""Send one message over SMTP on a socket made by ``NodeContext.socket()``.

The caller creates the (unconnected, non-blocking) socket in the right network
namespace; ``send_message`` connects it, speaks SMTP and reports what the server said,
so a caller can tell a temporary failure (4xx, refused, timed out: retry later) from a
permanent one (5xx: give up and bounce).
"""
from __future__ import annotations

import asyncio
import errno
import socket
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Reply:
    """One server reply: the code and the text (lines joined by a space)."""

    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500


class SmtpError(Exception):
    """The session failed. ``reply`` is None when the server never answered (connect).

    ``stage`` names what failed: "connect", "greeting", "HELO", "MAIL FROM",
    "RCPT TO", "DATA", "end of data"; ``detail`` is the text Postfix would show,
    e.g. "Connection refused" or "host said: 550 5.1.1 ...".
    """

    def __init__(self, stage: str, detail: str, reply: Reply | None = None) -> None:
        super().__init__(f"{stage}: {detail}")
        self.stage = stage
        self.detail = detail
        self.reply = reply

    @property
    def temporary(self) -> bool:
        return self.reply is None or self.reply.code < 500

    @property
    def code(self) -> int | None:
        return self.reply.code if self.reply else None


@dataclass
class SendResult:
    """A finished session: the reply to the message, and the recipients refused at RCPT."""

    reply: Reply | None
    accepted: list[str] = field(default_factory=list)
    refused: dict[str, Reply] = field(default_factory=dict)


def _connect_detail(exc: OSError | TimeoutError) -> str:
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "Connection timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "Connection refused"
    if exc.errno == errno.EHOSTUNREACH:
        return "No route to host"
    if exc.errno == errno.ENETUNREACH:
        return "Network is unreachable"
    return exc.strerror or str(exc)


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    """Read one (possibly multi-line) reply; raises ``ConnectionError`` on EOF or junk."""
    lines: list[str] = []
    while True:
        raw = await reader.readline()
        if not raw:
            raise ConnectionResetError("connection closed by server")
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if len(line) < 3 or not line[:3].isdigit():
            raise ConnectionError(f"bad reply line {line!r}")
        lines.append(line[4:])
        if len(line) == 3 or line[3] != "-":
            return Reply(int(line[:3]), " ".join(lines).strip())


def dot_stuff(message: bytes) -> bytes:
    """The DATA payload: CRLF line ends, leading dots doubled, ending in CRLF.CRLF."""
    lines = message.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = [b"." + ln if ln.startswith(b".") else ln for ln in lines]
    return b"\r\n".join(out) + b"\r\n.\r\n"


async def send_message(
    sock: socket.socket,
    server: tuple[str, int],
    mail_from: str,
    rcpt_to: list[str],
    message: bytes,
    *,
    helo_name: str,
    connect_timeout: float = 30.0,
    timeout: float = 60.0,
) -> SendResult:
    """Connect ``sock`` to ``server`` and send ``message`` from ``mail_from`` to ``rcpt_to``.

    Returns when the server answered the end of data with 2xx, or when it refused every
    recipient at RCPT (``reply`` None; see ``refused``). Raises ``SmtpError`` for every
    other failure. Always closes ``sock``.
    """
    loop = asyncio.get_running_loop()
    writer: asyncio.StreamWriter | None = None
    try:
        try:
            await asyncio.wait_for(loop.sock_connect(sock, server), connect_timeout)
        except (TimeoutError, OSError) as e:
            raise SmtpError("connect", _connect_detail(e)) from None
        reader, writer = await asyncio.open_connection(sock=sock)
        return await asyncio.wait_for(
            _session(reader, writer, mail_from, rcpt_to, message, helo_name), timeout
        )
    except TimeoutError:
        raise SmtpError("session", "conversation timed out") from None
    except (ConnectionError, OSError) as e:
        raise SmtpError("session", f"lost connection: {e}") from None
    finally:
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass
        else:
            sock.close()


async def _command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str
) -> Reply:
    writer.write(line.encode("utf-8") + b"\r\n")
    await writer.drain()
    return await read_reply(reader)


def _fail(stage: str, reply: Reply) -> SmtpError:
    return SmtpError(stage, f"host said: {reply}", reply)


async def _session(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    mail_from: str,
    rcpt_to: list[str],
    message: bytes,
    helo_name: str,
) -> SendResult:
    banner = await read_reply(reader)
    if banner.code != 220:
        raise _fail("greeting", banner)
    reply = await _command(reader, writer, f"EHLO {helo_name}")
    if reply.code >= 500:
        reply = await _command(reader, writer, f"HELO {helo_name}")
    if reply.code != 250:
        raise _fail("HELO", reply)
    reply = await _command(reader, writer, f"MAIL FROM:<{mail_from}>")
    if reply.code != 250:
        raise _fail("MAIL FROM", reply)
    result = SendResult(reply=None)
    for rcpt in rcpt_to:
        reply = await _command(reader, writer, f"RCPT TO:<{rcpt}>")
        if reply.code in (250, 251):
            result.accepted.append(rcpt)
        else:
            result.refused[rcpt] = reply
    if not result.accepted:
        await _quit(reader, writer)
        return result
    reply = await _command(reader, writer, "DATA")
    if reply.code != 354:
        raise _fail("DATA", reply)
    writer.write(dot_stuff(message))
    await writer.drain()
    reply = await read_reply(reader)
    if reply.code != 250:
        raise _fail("end of data", reply)
    result.reply = reply
    await _quit(reader, writer)
    return result


async def _quit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await asyncio.wait_for(_command(reader, writer, "QUIT"), 5)
    except (TimeoutError, ConnectionError, OSError):
        pass
