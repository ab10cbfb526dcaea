"""Messages as the MTA stores them: mbox entries, the Received: header it prepends,
bounce notices (RFC 3464), and appending to a mailbox under an exclusive lock.
"""
from __future__ import annotations

import asyncio
import fcntl
import os
import re
import secrets
import time
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path

from lab.protocols.maillog import client_name

FIRST_UID = 2001  # the n-th user of a mail server's ``users`` list has uid FIRST_UID + n
MAIL_GID = 8  # Debian's group "mail", which owns /var/mail


def mailbox_owner(users: list[str], user: str) -> tuple[int, int]:
    """The numeric (uid, gid) owning ``user``'s mailbox. The users of a lab exist only
    inside its nodes (the host has no such accounts), so each gets a fixed number by its
    place in the server's ``users`` list; the nodes' /etc/passwd names them."""
    return FIRST_UID + users.index(user), MAIL_GID


def passwd_lines(users: list[str]) -> list[str]:
    """``/etc/passwd`` entries for a mail server's users (no login, no home)."""
    return [f"{u}:x:{FIRST_UID + i}:{MAIL_GID}:{u}:/nonexistent:/usr/sbin/nologin"
            for i, u in enumerate(users)]


class MailboxBusy(Exception):
    """Another process holds the mailbox's lock for longer than we wait."""


def received_header(
    helo: str, ip: str, hostname: str, queue_id: str, proto: str, rcpts: list[str], when: datetime,
    software: str = "Postfix",
) -> str:
    """The Received: header smtpd prepends (folded like Postfix's)."""
    for_part = f"\n\tfor <{rcpts[0]}>" if len(rcpts) == 1 else ""
    return (
        f"Received: from {helo} ({client_name(ip).replace('[', ' [')})\n"
        f"\tby {hostname} ({software}) with {proto} id {queue_id}{for_part}; "
        f"{format_datetime(when)}\n"
    )


_FROM_LINE = re.compile(rb"^>*From ")


def mbox_entry(sender: str, rcpt: str, message: bytes, when: float) -> bytes:
    """One mboxrd message: From_ line, delivery headers, body with ``>From`` escaping."""
    stamp = time.asctime(time.localtime(when))
    head = (
        f"From {sender or 'MAILER-DAEMON'}  {stamp}\n"
        f"Return-Path: <{sender}>\n"
        f"X-Original-To: {rcpt}\n"
        f"Delivered-To: {rcpt}\n"
    ).encode()
    lines = message.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    body = b"\n".join(b">" + ln if _FROM_LINE.match(ln) else ln for ln in lines)
    return head + body + b"\n\n"


def message_id_of(message: bytes) -> str:
    head = message.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    m = re.search(rb"^message-id:[ \t]*(.*(?:\n[ \t].*)*)", head, re.IGNORECASE | re.MULTILINE)
    return m.group(1).decode("ascii", "replace").strip() if m else "<>"


def bounce_message(
    hostname: str,
    queue_id: str,
    sender: str,
    arrival: float,
    failures: dict[str, tuple[str, str]],
    original: bytes,
    now: float,
) -> bytes:
    """A Postfix-style delivery status notification (RFC 3464) for ``failures``.

    ``failures`` maps recipient -> (dsn status, reason text).
    """
    boundary = f"{queue_id}.{int(now)}/{hostname}"
    date = format_datetime(datetime.fromtimestamp(now).astimezone())
    arrival_date = format_datetime(datetime.fromtimestamp(arrival).astimezone())
    reasons = "\n\n".join(f"<{r}>: {why}" for r, (_, why) in failures.items())
    per_rcpt = "\n".join(
        f"Final-Recipient: rfc822; {r}\nOriginal-Recipient: rfc822;{r}\nAction: failed\n"
        f"Status: {dsn}\nDiagnostic-Code: X-Postfix; {why}\n"
        for r, (dsn, why) in failures.items()
    )
    text = (
        f"From: MAILER-DAEMON@{hostname} (Mail Delivery System)\n"
        f"Subject: Undelivered Mail Returned to Sender\n"
        f"To: {sender}\n"
        f"Auto-Submitted: auto-replied\n"
        f"Date: {date}\n"
        f"Message-Id: <{secrets.token_hex(6)}.{queue_id}@{hostname}>\n"
        f"MIME-Version: 1.0\n"
        f"Content-Type: multipart/report; report-type=delivery-status;\n"
        f'\tboundary="{boundary}"\n'
        f"Content-Transfer-Encoding: 8bit\n"
        f"\n"
        f"This is a MIME-encapsulated message.\n"
        f"\n"
        f"--{boundary}\n"
        f"Content-Description: Notification\n"
        f"Content-Type: text/plain; charset=us-ascii\n"
        f"\n"
        f"This is the mail system at host {hostname}.\n"
        f"\n"
        f"I'm sorry to have to inform you that your message could not\n"
        f"be delivered to one or more recipients. It's attached below.\n"
        f"\n"
        f"For further assistance, please send mail to postmaster.\n"
        f"\n"
        f"If you do so, please include this problem report. You can\n"
        f"delete your own text from the attached returned message.\n"
        f"\n"
        f"                   The mail system\n"
        f"\n"
        f"{reasons}\n"
        f"\n"
        f"--{boundary}\n"
        f"Content-Description: Delivery report\n"
        f"Content-Type: message/delivery-status\n"
        f"\n"
        f"Reporting-MTA: dns; {hostname}\n"
        f"X-Postfix-Queue-ID: {queue_id}\n"
        f"X-Postfix-Sender: rfc822; {sender}\n"
        f"Arrival-Date: {arrival_date}\n"
        f"\n"
        f"{per_rcpt}\n"
        f"--{boundary}\n"
        f"Content-Description: Undelivered Message\n"
        f"Content-Type: message/rfc822\n"
        f"Content-Transfer-Encoding: 8bit\n"
        f"\n"
    ).encode()
    return text + original.replace(b"\r\n", b"\n").rstrip(b"\n") + f"\n\n--{boundary}--\n".encode()


async def append_locked(path: Path, data: bytes, tries: int = 40, pause: float = 0.05,
                        owner: tuple[int, int] | None = None) -> None:
    """Append ``data`` to the mailbox at ``path`` under an exclusive ``flock``; a new
    mailbox is created mode 0600 and given to ``owner`` (uid, gid), as Postfix's local.

    Raises ``MailboxBusy`` when the lock stays taken for ``tries`` x ``pause`` seconds,
    ``OSError`` when the file cannot be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    if owner is not None and os.fstat(fd).st_size == 0:
        os.fchown(fd, *owner)
        os.fchmod(fd, 0o600)
    with os.fdopen(fd, "ab") as f:
        for _ in range(tries):
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(pause)
        else:
            raise MailboxBusy(str(path))
        try:
            f.write(data)
            f.flush()
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
