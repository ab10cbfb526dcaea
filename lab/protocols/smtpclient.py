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
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from lab.protocols.maillog import tls_summary
from lab.protocols.tlsca import peer_trust

SMTP_LINE_LENGTH_LIMIT = 998  # Postfix smtp_line_length_limit
TLS_LEVELS = ("none", "may", "encrypt", "verify")


@dataclass(frozen=True)
class Reply:
    """One server reply: the code and the text (lines joined by a space)."""

    code: int
    text: str
    lines: tuple[str, ...] = field(default=(), compare=False)

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

    def __init__(self, stage: str, detail: str, reply: Reply | None = None,
                 dsn: str | None = None) -> None:
        super().__init__(f"{stage}: {detail}")
        self.stage = stage
        self.detail = detail
        self.reply = reply
        self.dsn = dsn  # an enhanced code of our own (no reply), e.g. 4.7.4 for TLS

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
    tls: str = ""  # Postfix's TLS summary line, when the session used TLS
    setup: float = 0.0  # seconds: connect, greeting, EHLO, TLS (Postfix's delays "c")
    transfer: float = 0.0  # seconds: MAIL to the end of data (delays "d")


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
            return Reply(int(line[:3]), " ".join(lines).strip(), tuple(lines))


def dot_stuff(message: bytes, limit: int = SMTP_LINE_LENGTH_LIMIT) -> bytes:
    """The DATA payload: CRLF line ends, lines longer than ``limit`` broken by CRLF SPACE
    (Postfix's smtp_line_length_limit), leading dots doubled, ending in CRLF.CRLF."""
    lines = message.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for line in lines:
        while len(line) > limit:
            out.append(line[:limit])
            line = b" " + line[limit:]
        out.append(line)
    out = [b"." + ln if ln.startswith(b".") else ln for ln in out]
    return b"\r\n".join(out) + b"\r\n.\r\n"


@dataclass
class TlsPolicy:
    """STARTTLS for one destination, as Postfix's smtp_tls_security_level: ``none``,
    ``may`` (opportunistic), ``encrypt`` (mandatory, unverified), ``verify`` (mandatory,
    certificate must name ``hostname``)."""

    level: str = "none"
    context: ssl.SSLContext | None = None
    trust_file: Path | None = None
    hostname: str = ""

    @property
    def required(self) -> bool:
        return self.level in ("encrypt", "verify")


class SmtpClient:
    """One SMTP client session, command by command (the proxy forwards each one)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 peer: str) -> None:
        self.reader, self.writer, self.peer = reader, writer, peer
        self.features: set[str] = set()
        self.size_limit: int | None = None
        self.banner: Reply | None = None
        self.tls = ""
        self.port = 25

    @classmethod
    async def open(cls, sock: socket.socket, server: tuple[str, int], *, helo_name: str,
                   peer: str = "", tls: TlsPolicy | None = None,
                   connect_timeout: float = 30.0) -> SmtpClient:
        """Connect, read the banner, EHLO (HELO if refused), STARTTLS by ``tls``.
        Raises SmtpError; closes ``sock`` on failure."""
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.sock_connect(sock, server), connect_timeout)
        except (TimeoutError, OSError) as e:
            sock.close()
            raise SmtpError("connect", _connect_detail(e)) from None
        reader, writer = await asyncio.open_connection(sock=sock)
        client = cls(reader, writer, peer or f"{server[0]}[{server[0]}]")
        client.port = server[1]
        try:
            banner = await read_reply(reader)
            client.banner = banner
            if banner.code != 220:
                raise _fail("greeting", banner)
            await client.hello(helo_name)
            await client.starttls(tls or TlsPolicy(), helo_name)
        except BaseException:
            writer.close()
            raise
        return client

    async def command(self, line: str) -> Reply:
        self.writer.write(line.encode("utf-8") + b"\r\n")
        await self.writer.drain()
        return await read_reply(self.reader)

    async def hello(self, helo_name: str) -> None:
        reply = await self.command(f"EHLO {helo_name}")
        if reply.code >= 500:
            reply = await self.command(f"HELO {helo_name}")
        if reply.code != 250:
            raise _fail("HELO", reply)
        self.features = {ln.split()[0].upper() for ln in reply.lines[1:] if ln.split()}
        for ln in reply.lines[1:]:
            parts = ln.split()
            if len(parts) == 2 and parts[0].upper() == "SIZE" and parts[1].isdigit():
                self.size_limit = int(parts[1])

    async def starttls(self, tls: TlsPolicy, helo_name: str) -> None:
        if tls.level == "none" or tls.context is None:
            return
        if "STARTTLS" not in self.features:
            if tls.required:
                raise SmtpError("tls", f"TLS is required, but was not offered by host "
                                f"{self.peer}", dsn="4.7.4")
            return
        reply = await self.command("STARTTLS")
        if reply.code != 220:
            if tls.required:
                raise SmtpError("tls", f"TLS is required, but host {self.peer} refused to "
                                f"start TLS: {reply}", reply=reply)
            return
        try:
            await self.writer.start_tls(tls.context, server_hostname=tls.hostname or None)
        except (ssl.SSLError, ConnectionError, OSError) as e:
            raise SmtpError("tls", "Cannot start TLS: handshake failure",
                            dsn="4.7.5") from e
        ssl_object = self.writer.get_extra_info("ssl_object")
        trust = peer_trust(ssl_object, tls.trust_file or Path("/nonexistent"), tls.hostname)
        if tls.level == "verify" and trust != "Verified":
            raise SmtpError("tls", "Server certificate not verified", dsn="4.7.5")
        if tls.level != "verify" and trust == "Verified":
            trust = "Trusted"  # the name is only checked (and logged) at level verify
        self.tls = tls_summary(trust, "to", f"{self.peer}:{self.port}", ssl_object)
        await self.hello(helo_name)

    async def mail(self, sender: str) -> Reply:
        return await self.command(f"MAIL FROM:<{sender}>")

    async def rcpt(self, address: str) -> Reply:
        return await self.command(f"RCPT TO:<{address}>")

    async def body(self, message: bytes) -> Reply:
        """After DATA's 354: the message and its end; the reply to the end of data."""
        self.writer.write(dot_stuff(message))
        await self.writer.drain()
        return await read_reply(self.reader)

    async def quit(self) -> None:
        try:
            await asyncio.wait_for(self.command("QUIT"), 5)
        except (TimeoutError, ConnectionError, OSError, ssl.SSLError):
            pass

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError, ssl.SSLError):
            pass


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
    tls: TlsPolicy | None = None,
    peer: str = "",
) -> SendResult:
    """Connect ``sock`` to ``server`` and send ``message`` from ``mail_from`` to ``rcpt_to``.

    Returns when the server answered the end of data with 2xx, or when it refused every
    recipient at RCPT (``reply`` None; see ``refused``). Raises ``SmtpError`` for every
    other failure. Always closes ``sock``.
    """
    loop = asyncio.get_running_loop()  # its time() is the lab's clock
    started = loop.time()
    try:
        client = await asyncio.wait_for(
            SmtpClient.open(sock, server, helo_name=helo_name, peer=peer, tls=tls,
                            connect_timeout=connect_timeout), connect_timeout + timeout)
    except TimeoutError:
        raise SmtpError("session", "conversation timed out") from None
    except (ConnectionError, OSError, ssl.SSLError) as e:
        raise SmtpError("session", f"lost connection: {e}") from None
    try:
        setup = loop.time() - started
        result = await asyncio.wait_for(_transaction(client, mail_from, rcpt_to, message),
                                        timeout)
        result.tls, result.setup = client.tls, setup
        result.transfer = loop.time() - started - setup
        return result
    except TimeoutError:
        raise SmtpError("session", "conversation timed out") from None
    except (ConnectionError, OSError, ssl.SSLError) as e:
        raise SmtpError("session", f"lost connection: {e}") from None
    finally:
        await client.close()


def _fail(stage: str, reply: Reply) -> SmtpError:
    return SmtpError(stage, f"host said: {reply}", reply)


async def _transaction(client: SmtpClient, mail_from: str, rcpt_to: list[str],
                       message: bytes) -> SendResult:
    reply = await client.mail(mail_from)
    if reply.code != 250:
        raise _fail("MAIL FROM", reply)
    result = SendResult(reply=None)
    for rcpt in rcpt_to:
        reply = await client.rcpt(rcpt)
        if reply.code in (250, 251):
            result.accepted.append(rcpt)
        else:
            result.refused[rcpt] = reply
    if not result.accepted:
        await client.quit()
        return result
    reply = await client.command("DATA")
    if reply.code != 354:
        raise _fail("DATA", reply)
    reply = await client.body(message)
    if reply.code != 250:
        raise _fail("end of data", reply)
    result.reply = reply
    await client.quit()
    return result
