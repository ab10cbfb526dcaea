"""The SMTP engine answers what Postfix answers, command by command.

Every expected reply below was recorded from Debian 12's Postfix 3.7.11 (``smtpd -S``,
stand-alone mode, default main.cf but for an empty ``local_recipient_maps``) by sending
the same session to it: EHLO, then (for RCPT cases) ``MAIL FROM:<a@b>``, then the
command under test, then QUIT. The engine runs here with hooks that accept every
address, like that Postfix, over a socket pair.
"""
from __future__ import annotations

import asyncio
import socket

import pytest

from lab.protocols.smtpd import Smtpd, SmtpdHooks


class _Accepting(SmtpdHooks):
    hostname = "mail.example.net"

    def __init__(self) -> None:
        self.logged: list[str] = []

    def log(self, session, message):
        self.logged.append(message)

    async def data(self, session, content):
        return "250 2.0.0 Ok: queued as 0123456789"


async def _serving(hooks: _Accepting, **options) -> tuple[asyncio.Future, asyncio.StreamReader,
                                                         asyncio.StreamWriter]:
    """The engine serving one session over a socket pair: its task, and the client's end."""
    a, b = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=a)
    served = asyncio.ensure_future(Smtpd(hooks, error_sleep=0, **options).serve(reader, writer))
    client_r, client_w = await asyncio.open_connection(sock=b)
    return served, client_r, client_w


async def _ended(served: asyncio.Future, client_r: asyncio.StreamReader,
                 client_w: asyncio.StreamWriter) -> list[str]:
    """The final line of every reply of the session, once the engine has ended it."""
    out = await asyncio.wait_for(client_r.read(), 5)
    await served
    client_w.close()
    return [ln for ln in out.decode(errors="replace").split("\r\n") if ln and ln[3:4] != "-"]


async def _session(lines: list[bytes], hooks: _Accepting | None = None) -> list[str]:
    """The final line of every reply the engine gives to ``lines`` (sent at once)."""
    served, client_r, client_w = await _serving(hooks or _Accepting())
    client_w.write(b"".join(line + b"\r\n" for line in lines))
    await client_w.drain()
    return await _ended(served, client_r, client_w)


def _reply_to(prefix: list[bytes], command: bytes) -> list[str]:
    """The replies after the banner and the prefix's: the command's, then QUIT's if any."""
    got = asyncio.run(_session([*prefix, command, b"QUIT"]))
    return got[1 + len(prefix):]


EHLO = [b"EHLO a"]
IN_MAIL = [b"EHLO a", b"MAIL FROM:<a@b>"]


@pytest.mark.parametrize("command, expected", [
    (b"MAIL FROM:<a@b>", "250 2.1.0 Ok"),
    (b"mail from:<a@b>", "250 2.1.0 Ok"),
    (b"MAIL FROM: <a@b>", "250 2.1.0 Ok"),
    (b"MAIL FROM:a@b", "250 2.1.0 Ok"),
    (b"MAIL FROM:a@b>", "250 2.1.0 Ok"),
    (b"MAIL FROM:<<a@b>>", "250 2.1.0 Ok"),
    (b"MAIL FROM:<<<>>>", "250 2.1.0 Ok"),
    (b"MAIL FROM:<@r:a@b>", "250 2.1.0 Ok"),
    (b"MAIL FROM:<>", "250 2.1.0 Ok"),
    (b'MAIL FROM:"a b"@c', "250 2.1.0 Ok"),
    (b"MAIL FROM:<a@b> BODY=8BITMIME SIZE=100", "250 2.1.0 Ok"),
    (b"MAIL FROM:<a b>", "501 5.1.7 Bad sender address syntax"),
    (b"MAIL FROM:<a@b", "501 5.1.7 Bad sender address syntax"),
    (b"MAIL FROM:<a@b>junk", "501 5.1.7 Bad sender address syntax"),
    (b"MAIL FROM:<a@b>,<c@d>", "501 5.1.7 Bad sender address syntax"),
    (b"MAIL FROM:", "501 5.5.4 Syntax: MAIL FROM:<address>"),
    (b"MAIL TO:<a@b>", "501 5.5.4 Syntax: MAIL FROM:<address>"),
    (b"MAIL from :<a@b>", "501 5.5.4 Syntax: MAIL FROM:<address>"),
    (b"MAIL FROM:<a@b> <c@d>", "555 5.5.4 Unsupported option: <c@d>"),
    (b"MAIL FROM:<a@b> FOO=bar", "555 5.5.4 Unsupported option: FOO=bar"),
    (b"MAIL FROM:<a@b> SIZE=abc", "501 5.5.4 Bad message size syntax"),
    (b"MAIL FROM:<a@b> SIZE=99999999999", "552 5.3.4 Message size exceeds fixed limit"),
    (b"HELO", "501 Syntax: HELO hostname"),
    (b"HELO a b", "250 mail.example.net"),
    (b"EHLO", "501 Syntax: EHLO hostname"),
    (b"NOOP x", "250 2.0.0 Ok"),
    (b"NOOP " + b"X" * 10240, "250 2.0.0 Ok"),  # line_length_limit: truncated, answered
    (b"RSET x", "501 5.5.4 Syntax: RSET"),
    (b"QUIT x", "221 2.0.0 Bye"),
    (b"DATA", "503 5.5.1 Error: need RCPT command"),
    (b"DATA x", "503 5.5.1 Error: need RCPT command"),
    (b"RCPT TO:<a@b>", "503 5.5.1 Error: need MAIL command"),
    (b"STARTTLS", "502 5.5.1 Error: command not implemented"),
    (b"AUTH PLAIN x", "503 5.5.1 Error: authentication not enabled"),
    (b"VRFY", "501 5.5.4 Syntax: VRFY address [SMTPUTF8]"),
    (b"VRFY jsmith", "252 2.0.0 jsmith"),
    (b"VRFY <jsmith@example.net>", "252 2.0.0 <jsmith@example.net>"),
    (b"VRFY <>", "501 5.1.3 Bad recipient address syntax"),
    (b"VRFY a b", "501 5.1.3 Bad recipient address syntax"),
    (b"HELP", "500 5.5.2 Error: command not recognized"),
    (b"EXPN x", "500 5.5.2 Error: command not recognized"),
    (b"FOOBAR baz", "500 5.5.2 Error: command not recognized"),
    (b"caf\xc3\xa9", "500 5.5.2 Error: command not recognized"),
    (b"", "500 5.5.2 Error: bad syntax"),
    (b"   ", "500 5.5.2 Error: bad syntax"),
    (b"\x00\xff\xfe\x01 garbage", "500 5.5.2 Error: bad UTF-8 syntax"),
    (b"NOOP \xff", "500 5.5.2 Error: bad UTF-8 syntax"),
])
def test_command_after_ehlo(command, expected):
    quit_reply = [] if command.upper().startswith(b"QUIT") else ["221 2.0.0 Bye"]
    assert _reply_to(EHLO, command) == [expected, *quit_reply]


@pytest.mark.parametrize("command, expected", [
    (b"RCPT TO:<c@d>", "250 2.1.5 Ok"),
    (b"RCPT TO:c@d", "250 2.1.5 Ok"),
    (b"RCPT TO:<@x:c@d>", "250 2.1.5 Ok"),
    (b"RCPT TO:", "501 5.5.4 Syntax: RCPT TO:<address>"),
    (b"RCPT FROM:<c@d>", "501 5.5.4 Syntax: RCPT TO:<address>"),
    (b"RCPT TO:<>", "501 5.1.3 Bad recipient address syntax"),
    (b"RCPT TO:<a b>", "501 5.1.3 Bad recipient address syntax"),
    (b"RCPT TO:<c@d", "501 5.1.3 Bad recipient address syntax"),
    (b"RCPT TO:<c@d> FOO", "555 5.5.4 Unsupported option: FOO"),
    (b"MAIL FROM:<a@b>", "503 5.5.1 Error: nested MAIL command"),
    (b"STARTTLS x", "501 5.5.4 Syntax: STARTTLS"),
    (b"DATA", "554 5.5.1 Error: no valid recipients"),
])
def test_command_in_a_transaction(command, expected):
    got = _reply_to(IN_MAIL, command)
    assert got[0] == expected and got[1:] == ["221 2.0.0 Bye"], got


@pytest.mark.parametrize("command", [
    b"Subject: x", b"GET / HTTP/1.0", b"get /", b"CONNECT h:443 HTTP/1.1", b"1234",
    b"\x01 garbage",
])
def test_non_smtp_command_ends_the_session(command):
    """smtpd_forbid_commands (and a mail header sent as a command): 221, then no more."""
    assert _reply_to(EHLO, command) == ["221 2.7.0 Error: I can break rules, too. Goodbye."]


def test_mail_without_helo_is_accepted():
    """smtpd_helo_required = no: MAIL, RCPT and DATA need no HELO first."""
    got = asyncio.run(_session([b"MAIL FROM:<a@b>", b"RCPT TO:<c@d>", b"DATA",
                                b"Subject: x", b"", b"body", b".", b"QUIT"]))
    assert got[1:] == ["250 2.1.0 Ok", "250 2.1.5 Ok", "354 End data with <CR><LF>.<CR><LF>",
                       "250 2.0.0 Ok: queued as 0123456789", "221 2.0.0 Bye"], got


def test_long_ehlo_is_answered_and_the_session_goes_on():
    got = _reply_to([b"EHLO " + b"a" * 10240], b"NOOP")
    assert got == ["250 2.0.0 Ok", "221 2.0.0 Bye"], got


@pytest.mark.parametrize("lines, logged", [
    ([b"EHLO a", b"", b"NOOP \xff", b"FOO", b"QUIT"],
     ["connect from unknown[unknown]",
      "disconnect from unknown[unknown] ehlo=1 quit=1 unknown=0/1 commands=2/3"]),
    ([b"EHLO a", b"Subject: x"],
     ["connect from unknown[unknown]",
      "warning: non-SMTP command from unknown[unknown]: Subject: x",
      "disconnect from unknown[unknown] ehlo=1 unknown=0/1 commands=1/2"]),
    ([b"EHLO a", b"MAIL FROM:<a b>", b"MAIL FROM:<a@b>", b"RCPT TO:<>", b"QUIT"],
     ["connect from unknown[unknown]",
      "warning: Illegal address syntax from unknown[unknown] in MAIL command: <a b>",
      "warning: Illegal address syntax from unknown[unknown] in RCPT command: <>",
      "disconnect from unknown[unknown] ehlo=1 mail=1/2 rcpt=0/1 quit=1 commands=3/5"]),
], ids=["errors", "non-smtp", "bad-addresses"])
def test_session_log_lines(lines, logged):
    """mail.log as Postfix writes it for the same session (its client was localhost, ours
    a socket pair: ``unknown[unknown]``)."""
    hooks = _Accepting()
    asyncio.run(_session(lines, hooks))
    assert hooks.logged == logged


async def _data_session(gaps: list[float], timeout: float) -> tuple[list[str], list[str]]:
    """A message sent line by line after DATA with ``gaps`` seconds before each line (the
    client then ends the message and quits), to an engine whose timeout is ``timeout``:
    the final line of every reply, and what it logged."""
    hooks = _Accepting()
    served, client_r, client_w = await _serving(hooks, timeout=timeout)
    client_w.write(b"EHLO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
    for i, gap in enumerate(gaps):
        await asyncio.sleep(gap)
        if served.done():
            break
        client_w.write(b"line %d\r\n" % i)
    if not served.done():
        client_w.write(b".\r\nQUIT\r\n")
    return await _ended(served, client_r, client_w), hooks.logged


def test_data_time_limit_is_per_line():
    """A client that sends each line within the time limit is not cut off, however long
    the whole message takes (Postfix's smtpd_timeout is per read)."""
    replies, _ = asyncio.run(_data_session([0.1] * 6, timeout=0.3))
    assert replies[-2:] == ["250 2.0.0 Ok: queued as 0123456789", "221 2.0.0 Bye"]


def test_silent_client_after_data_times_out():
    replies, logged = asyncio.run(_data_session([0.05, 1.5], timeout=0.3))
    assert replies[-1] == "421 4.4.2 mail.example.net Error: timeout exceeded"
    assert "timeout after DATA (8 bytes) from unknown[unknown]" in logged
