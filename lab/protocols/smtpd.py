"""The lab's SMTP server engine: one session, in Postfix smtpd's grammar and words.

The mail servers (:mod:`lab.services.mta`) and the firewall's SMTP proxy
(:mod:`lab.services.proxy`) both speak SMTP through this engine; what to do with a
sender, a recipient or a message is theirs (an ``SmtpdHooks``). The engine owns what a
client sees of the protocol, as Debian 12's Postfix 3.7 shows it: the replies and their
enhanced codes, EHLO's extensions (PIPELINING, SIZE, VRFY, STARTTLS,
ENHANCEDSTATUSCODES, 8BITMIME), commands read in order whatever the client pipelines,
``line_length_limit`` 2048 for commands, a ``.`` line ending DATA whether it ends in
CRLF or a bare LF, the soft (10) and hard (20) error limits, STARTTLS, and the session
lines of mail.log (connect, disconnect with per-command counts, ``lost connection after
DATA (N bytes)``, ``after UNKNOWN``...).

It is not aiosmtpd: aiosmtpd's state machine has its own wording, limits and DATA
framing inside private methods, and Postfix's behaviour is what the lab teaches.
"""
from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

from lab.model.mta import MESSAGE_SIZE_LIMIT
from lab.protocols.maillog import client_name, log_disconnect, tls_summary
from lab.protocols.smtpwire import (
    LINE_LENGTH_LIMIT,
    Token,
    extract_address,
    forbidden,
    printable,
    read_line,
    tokenize,
    valid_utf8,
)

SOFT_ERROR_LIMIT = 10  # smtpd_soft_error_limit
HARD_ERROR_LIMIT = 20  # smtpd_hard_error_limit
ERROR_SLEEP = 1.0  # smtpd_error_sleep_time
JUNK_COMMAND_LIMIT = 100  # smtpd_junk_command_limit
JUNK = {"NOOP", "VRFY", "RSET", "HELO", "EHLO"}
COMMANDS = ("HELO", "EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "RSET", "NOOP",
            "VRFY", "QUIT")
AFTER_DATA = "DATA content"
AFTER_EOM = "END-OF-MESSAGE"


@dataclass
class Session:
    """What one client connection has said so far (the hooks read it)."""

    client_ip: str
    client_port: int
    pid: int = 0
    helo: str | None = None
    proto: str = "SMTP"
    sender: str | None = None  # None: no MAIL yet; "" is the null sender
    rcpts: list[str] = field(default_factory=list)
    where: str = "CONNECT"
    tls: bool = False
    data_bytes: int = 0
    counts: dict[str, list[int]] = field(default_factory=dict)
    context: dict = field(default_factory=dict)  # the hooks' own per-session state

    @property
    def name(self) -> str:
        return client_name(self.client_ip)

    def reset(self) -> None:
        self.sender, self.rcpts = None, []


class SmtpdHooks:
    """What a server does with a session; the defaults accept everything."""

    hostname = "localhost"
    vrfy = True

    def size_limit(self, session: Session) -> int:
        """The SIZE this session is offered and held to (message_size_limit)."""
        return MESSAGE_SIZE_LIMIT

    def tls_context(self) -> ssl.SSLContext | None:
        """The context STARTTLS uses; None: STARTTLS is not offered."""
        return None

    def log(self, session: Session, message: str) -> None:
        pass

    def new_pid(self) -> int:
        """The (pseudo) process id this session's log lines carry."""
        return 0

    async def connect(self, session: Session) -> str | None:
        """A reply that refuses the client (then the session ends), or None."""
        return None

    async def disconnect(self, session: Session) -> None:
        pass

    async def mail(self, session: Session, sender: str) -> str:
        return "250 2.1.0 Ok"

    async def rcpt(self, session: Session, address: str) -> str:
        return "250 2.1.5 Ok"

    async def verify(self, session: Session, address: str, as_given: str) -> str:
        """VRFY ``address`` (``as_given``: the argument as the client wrote it)."""
        return f"252 2.0.0 {as_given}"

    async def data(self, session: Session, content: bytes) -> str:
        raise NotImplementedError

    async def reset(self, session: Session) -> None:
        """The transaction ended (RSET, HELO, end of DATA, disconnect)."""


class _Closed(Exception):
    """The session ends here (QUIT, a 421, the hard error limit)."""


class Smtpd:
    """Runs sessions for one set of hooks: ``await smtpd.serve(reader, writer)``."""

    def __init__(self, hooks: SmtpdHooks, *, timeout: float = 300.0,
                 error_sleep: float = ERROR_SLEEP) -> None:
        self.hooks = hooks
        self.timeout = timeout
        self.error_sleep = error_sleep

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    context: dict | None = None) -> None:
        """One session; ``context`` starts the session's ``context`` for the hooks."""
        peer = writer.get_extra_info("peername") or ("unknown", 0)
        session = Session(peer[0], peer[1], context=dict(context or {}))
        await _Run(self, reader, writer, session).main()


class _Run:
    """One session: the command loop and its commands."""

    def __init__(self, smtpd: Smtpd, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, session: Session) -> None:
        self.smtpd, self.hooks = smtpd, smtpd.hooks
        self.reader, self.writer, self.s = reader, writer, session
        self.errors = 0
        self.junk = 0
        self.reason = ""

    def log(self, message: str) -> None:
        self.hooks.log(self.s, message)

    async def reply(self, text: str) -> None:
        if self.errors > SOFT_ERROR_LIMIT:
            await asyncio.sleep(self.smtpd.error_sleep)
        self.writer.write(text.encode("utf-8", "replace") + b"\r\n")
        await self.writer.drain()

    async def main(self) -> None:
        s = self.s
        s.pid = self.hooks.new_pid()
        self.log(f"connect from {s.name}")
        try:
            refusal = await self.hooks.connect(s)
            if refusal is not None:
                await self.reply(refusal)
            else:
                await self.reply(f"220 {self.hooks.hostname} ESMTP")
                await self.loop()
        except _Closed:
            pass
        except TimeoutError:  # before OSError: it is one
            self.reason = "timeout"
            await self._try_reply(f"421 4.4.2 {self.hooks.hostname} Error: timeout exceeded")
        except (EOFError, ConnectionError, OSError, ssl.SSLError):
            self.reason = "lost connection"
        finally:
            await self.finish()

    async def _try_reply(self, text: str) -> None:
        try:
            await asyncio.wait_for(self.reply(text), 1)
        except (TimeoutError, ConnectionError, OSError):
            pass

    async def finish(self) -> None:
        s = self.s
        if self.reason:
            if s.where == AFTER_DATA:
                self.log(f"{self.reason} after DATA ({s.data_bytes} bytes) from {s.name}")
            elif s.where != AFTER_EOM or self.reason != "lost connection":
                self.log(f"{self.reason} after {s.where} from {s.name}")
        await self.hooks.reset(s)
        await self.hooks.disconnect(s)
        counts = {k: (v[0], v[1]) for k, v in s.counts.items()}
        self.log(log_disconnect(s.client_ip, counts))
        self.writer.close()

    async def read_command(self) -> bytes:
        line, _ = await asyncio.wait_for(read_line(self.reader, keep=LINE_LENGTH_LIMIT + 2),
                                         self.smtpd.timeout)
        if len(line) > LINE_LENGTH_LIMIT:
            line = line[:LINE_LENGTH_LIMIT]
            text = line.decode("utf-8", "replace")
            self.log(f"warning: {self.s.name}: request longer than {LINE_LENGTH_LIMIT}: "
                     f"{printable(text[:30])}...")
        return line

    async def loop(self) -> None:
        while True:
            if self.errors >= HARD_ERROR_LIMIT:
                self.reason = "too many errors"
                await self.reply(f"421 4.7.0 {self.hooks.hostname} Error: too many errors")
                raise _Closed
            raw = await self.read_command()
            if not valid_utf8(raw):
                await self.error("500 5.5.2 Error: bad UTF-8 syntax")
                continue
            argv = tokenize(raw.decode("utf-8"))
            if not argv:
                await self.error("500 5.5.2 Error: bad syntax")
                continue
            verb = argv[0].text.upper()
            if verb not in COMMANDS:
                await self.unknown(argv[0].text, raw)
                continue
            self.s.where = verb
            code = await self.run(verb, argv[1:])
            counts = self.s.counts.setdefault(verb.lower(), [0, 0])
            counts[1] += 1
            if code < 400:
                counts[0] += 1
            elif verb != "QUIT":
                self.errors += 1
            if verb in JUNK:
                self.junk += 1
                if self.junk > JUNK_COMMAND_LIMIT:
                    self.errors += 1
            if verb == "QUIT":
                raise _Closed

    async def unknown(self, verb: str, raw: bytes) -> None:
        """Not a command: 500, or the end of the session for one that shows the client is
        not speaking SMTP at all (smtpd_forbid_commands)."""
        self.s.where = "UNKNOWN"
        self.s.counts.setdefault("unknown", [0, 0])[1] += 1
        if forbidden(verb):
            self.log(f"warning: non-SMTP command from {self.s.name}: "
                     f"{printable(raw.decode('utf-8')[:100])}")
            await self.reply("221 2.7.0 Error: I can break rules, too. Goodbye.")
            raise _Closed
        await self.error("500 5.5.2 Error: command not recognized")

    def address(self, token: Token, empty_ok: bool = False) -> str | None:
        """The address in a MAIL, RCPT or VRFY argument, or None (logged as Postfix does)
        when it is malformed, or empty where an address is needed."""
        address = extract_address(token)
        if address is None or (not address and not empty_ok):
            self.log(f"warning: Illegal address syntax from {self.s.name} in {self.s.where} "
                     f"command: {printable(token.text)}")
            return None
        return address

    async def error(self, text: str) -> None:
        self.errors += 1
        await self.reply(text)

    async def run(self, verb: str, args: list[Token]) -> int:
        """A command's handler gets its arguments as Postfix's tokenizer splits them."""
        handler = getattr(self, f"do_{verb.lower()}")
        text = await handler(args)
        if text is not None:
            await self.reply(text)
            return int(text[:3])
        return 250

    # ---- commands ------------------------------------------------------------------

    async def do_helo(self, args: list[Token]) -> str:
        if not args:
            return "501 Syntax: HELO hostname"
        await self._new_helo(_joined(args), "SMTP")
        return f"250 {self.hooks.hostname}"

    async def do_ehlo(self, args: list[Token]) -> None | str:
        if not args:
            return "501 Syntax: EHLO hostname"
        await self._new_helo(_joined(args), "ESMTP")
        lines = [self.hooks.hostname, "PIPELINING", f"SIZE {self.hooks.size_limit(self.s)}"]
        if self.hooks.vrfy:
            lines.append("VRFY")
        if self.hooks.tls_context() is not None and not self.s.tls:
            lines.append("STARTTLS")
        lines += ["ENHANCEDSTATUSCODES", "8BITMIME"]
        text = "".join(f"250{'-' if i < len(lines) - 1 else ' '}{line}\r\n"
                       for i, line in enumerate(lines))
        self.writer.write(text.encode())
        await self.writer.drain()
        return None

    async def _new_helo(self, name: str, proto: str) -> None:
        if self.s.sender is not None:
            await self.hooks.reset(self.s)
        self.s.reset()
        self.s.helo = name
        self.s.proto = proto

    async def do_starttls(self, args: list[Token]) -> str | None:
        context = self.hooks.tls_context()
        if args:
            return "501 5.5.4 Syntax: STARTTLS"
        if self.s.tls:
            return "554 5.5.1 Error: TLS already active"
        if context is None:
            return "502 5.5.1 Error: command not implemented"
        if self.s.sender is not None:
            return "503 5.5.1 Error: MAIL transaction in progress"
        await self.reply("220 2.0.0 Ready to start TLS")
        # commands pipelined after STARTTLS were sent in clear: drop them, as Postfix
        # does (CVE-2011-0411); StreamReader has no public way to empty its buffer
        self.reader._buffer.clear()
        try:
            await asyncio.wait_for(self.writer.start_tls(context), self.smtpd.timeout)
        except (ssl.SSLError, ConnectionError, OSError, TimeoutError) as e:
            self.log(f"SSL_accept error from {self.s.name}: {_ssl_reason(e)}")
            self.reason = "lost connection"
            raise _Closed from None
        self.s.tls = True
        self.s.helo = None
        self.log(tls_summary("Anonymous", "from", self.s.name,
                             self.writer.get_extra_info("ssl_object")))
        return None

    async def do_auth(self, args: list[Token]) -> str:
        return "503 5.5.1 Error: authentication not enabled"

    async def do_mail(self, args: list[Token]) -> str:
        """Postfix's mail_cmd (HELO is not required: smtpd_helo_required = no)."""
        s = self.s
        if s.sender is not None:
            return "503 5.5.1 Error: nested MAIL command"
        if len(args) < 2 or args[0].text.lower() != "from:":
            return "501 5.5.4 Syntax: MAIL FROM:<address>"
        sender = self.address(args[1], empty_ok=True)
        if sender is None:
            return "501 5.1.7 Bad sender address syntax"
        size = 0
        for param in (t.text for t in args[2:]):
            key, _, value = param.partition("=")
            if key.upper() == "SIZE" and value.isdigit():
                size = int(value)
            elif key.upper() == "SIZE":
                return "501 5.5.4 Bad message size syntax"
            elif key.upper() != "BODY" or value.upper() not in ("7BIT", "8BITMIME"):
                return f"555 5.5.4 Unsupported option: {param}"
        if size > self.hooks.size_limit(s):
            return "552 5.3.4 Message size exceeds fixed limit"
        reply = await self.hooks.mail(s, sender)
        if reply.startswith("2"):
            s.sender = sender
        return reply

    async def do_rcpt(self, args: list[Token]) -> str:
        s = self.s
        if s.sender is None:
            return "503 5.5.1 Error: need MAIL command"
        if len(args) < 2 or args[0].text.lower() != "to:":
            return "501 5.5.4 Syntax: RCPT TO:<address>"
        address = self.address(args[1])
        if not address:
            return "501 5.1.3 Bad recipient address syntax"
        if len(args) > 2:
            return f"555 5.5.4 Unsupported option: {args[2].text}"
        reply = await self.hooks.rcpt(s, address)
        if reply.startswith("2"):
            s.rcpts.append(address)
        return reply

    async def do_data(self, args: list[Token]) -> str:
        s = self.s
        if s.sender is None:
            return "503 5.5.1 Error: need RCPT command"
        if not s.rcpts:
            return "554 5.5.1 Error: no valid recipients"
        if args:
            return "501 5.5.4 Syntax: DATA"
        await self.reply("354 End data with <CR><LF>.<CR><LF>")
        s.where, s.data_bytes = AFTER_DATA, 0
        lines: list[bytes] = []
        too_big = False
        loop = asyncio.get_running_loop()
        # the time limit is per line, as Postfix's smtpd_timeout is per read; one timer
        # moved on at each line, not a task per line (asyncio.wait_for's): a message is
        # hundreds of lines, and the lab's mail servers share one process
        async with asyncio.timeout(None) as limit:
            while True:
                limit.reschedule(loop.time() + self.smtpd.timeout)
                line, size = await read_line(self.reader)
                if line == b".":
                    break
                s.data_bytes += size
                if line.startswith(b"."):
                    line = line[1:]
                if not too_big and s.data_bytes > self.hooks.size_limit(s):
                    too_big, lines = True, []
                if not too_big:
                    lines.append(line)
        s.where = AFTER_EOM
        if too_big:
            reply = "552 5.3.4 Message size exceeds fixed limit"
        else:
            reply = await self.hooks.data(s, b"\n".join(lines) + b"\n")
        await self.hooks.reset(s)
        s.reset()
        return reply

    async def do_rset(self, args: list[Token]) -> str:
        if args:
            return "501 5.5.4 Syntax: RSET"
        if self.s.sender is not None:
            await self.hooks.reset(self.s)
        self.s.reset()
        return "250 2.0.0 Ok"

    async def do_noop(self, args: list[Token]) -> str:
        return "250 2.0.0 Ok"

    async def do_vrfy(self, args: list[Token]) -> str:
        if not self.hooks.vrfy:
            return "502 5.5.1 VRFY command is disabled"
        if not args:
            return "501 5.5.4 Syntax: VRFY address [SMTPUTF8]"
        arg = Token(_joined(args), all(t.ok for t in args))  # Postfix's collapse_args
        address = self.address(arg)
        if not address:
            return "501 5.1.3 Bad recipient address syntax"
        return await self.hooks.verify(self.s, address, arg.text)

    async def do_quit(self, args: list[Token]) -> str:
        return "221 2.0.0 Bye"


def _joined(args: list[Token]) -> str:
    return " ".join(t.text for t in args)


def _ssl_reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError):
        return error.reason or str(error)
    return str(error) or type(error).__name__
