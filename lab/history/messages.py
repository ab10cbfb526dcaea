"""What the lab's background mail looks like: ordinary business mail and firewall alerts.

Everything comes from the caller's random generator (seeded per lab and attempt), so a
replay is reproducible and two labs differ. Nothing here knows the faults: subjects,
bodies, Message-IDs and headers are those of any small company's mail (DESIGN.md rule 4).
"""
from __future__ import annotations

import random
import uuid
from datetime import datetime
from email.charset import QP, Charset
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime

SUBJECTS = (
    "Meeting notes", "Re: Quarterly figures", "Invoice {n}", "Shipment {n} dispatched",
    "Lunch on Friday?", "Re: Contract draft", "Updated price list", "Fwd: Conference schedule",
    "Order confirmation {n}", "Re: Support case {n}", "Holiday rota", "Project status",
    "Minutes of the board meeting", "Re: Proposal", "Visit next week", "Timesheet",
    "Re: Delivery dates", "Training sessions", "Re: Re: Budget", "Office move",
)
GREETINGS = ("Hi {name},", "Hello {name},", "Dear {name},", "{name},")
SENTENCES = (
    "Please find the details below.",
    "As discussed on the phone, here is a short summary.",
    "Could you have a look before Thursday?",
    "The figures are in line with last quarter.",
    "Let me know if you need anything else.",
    "We would like to confirm the dates for the next visit.",
    "The order left our warehouse this morning.",
    "I have updated the document with your comments.",
    "Thanks again for your quick reply.",
    "The meeting room is booked from 10 to 12.",
    "Our accounts department will follow up on the invoice.",
    "I will be out of the office on Monday.",
    "Attached is the latest version.",
    "Can we move the call to next week?",
)
CLOSINGS = ("Best regards,", "Kind regards,", "Thanks,", "Cheers,", "Regards,")
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Thunderbird/115.5.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.4.1",
    None,  # many clients send none
)
ATTACHMENT_SHARE = 0.2
POLICY = compat32.clone(linesep="\n")  # as the modern package wrote them: LF line ends
ROLE_ACCOUNTS = frozenset({"admin", "postmaster", "root", "abuse", "hostmaster", "webmaster",
                           "noreply", "info", "mailer-daemon"})

ALERTS = (
    ("Port scan detected from {ext}", "Source {ext} probed {n} ports within 60 seconds."),
    ("Blocked inbound SSH attempts from {ext}",
     "{n} connection attempts to port 22 from {ext} were denied."),
    ("Administrator login from {lan}", "The administrator logged in from {lan}."),
    ("Signature database updated", "Intrusion signatures updated to revision {n}."),
    ("Daily traffic summary", "Sessions in the last 24 hours: {n}000."),
    ("High connection rate from {ext}", "{ext} opened {n} sessions in one minute."),
)


def people(users: tuple[str, ...] | list[str]) -> list[str]:
    """The personal mailboxes among ``users`` (role accounts only when there are no others)."""
    personal = [u for u in users if u not in ROLE_ACCOUNTS]
    return personal or list(users)


def display_name(user: str) -> str:
    """``jsmith`` -> ``J. Smith``; anything else capitalised."""
    if len(user) > 3 and user.isalpha():
        return f"{user[0].upper()}. {user[1:].capitalize()}"
    return user.replace(".", " ").title()


def message_id(rng: random.Random, domain: str) -> str:
    return f"<{uuid.UUID(int=rng.getrandbits(128), version=4)}@{domain}>"


def business_mail(rng: random.Random, sender: str, rcpt: str, when: datetime) -> bytes:
    """One ordinary message from ``sender`` to ``rcpt``, dated ``when``.

    Made with the email package's classic message class (compat32): the modern
    ``EmailMessage`` parses every header it is given again, which was a tenth of what a
    replayed message cost the supervisor; the headers here are plain ASCII made by this
    function. The MIME boundary comes from the Message-ID: the message is the seed's."""
    msg = Message()
    msg["From"] = f"{display_name(sender.split('@')[0])} <{sender}>"
    msg["To"] = rcpt
    msg["Subject"] = rng.choice(SUBJECTS).format(n=rng.randrange(1000, 99999))
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = mid = message_id(rng, sender.rpartition("@")[2])
    agent = rng.choice(USER_AGENTS)
    if agent:
        msg["User-Agent"] = agent
    msg["MIME-Version"] = "1.0"
    name = display_name(rcpt.split("@")[0]).split()[-1]
    lines = [rng.choice(GREETINGS).format(name=name), ""]
    lines += [" ".join(rng.sample(SENTENCES, rng.randint(2, 4))), ""]
    lines += [rng.choice(CLOSINGS), display_name(sender.split("@")[0])]
    text = "\n".join(lines) + "\n"
    if rng.random() >= ATTACHMENT_SHARE:
        msg.set_payload(text, _text_charset(lines))
        return msg.as_bytes(policy=POLICY)
    size = rng.randrange(4_000, 40_000)
    pdf = MIMEApplication(b"%PDF-1.4\n" + rng.randbytes(size), "pdf")
    pdf.add_header("Content-Disposition", "attachment",
                   filename=f"document-{rng.randrange(100, 999)}.pdf")
    msg.add_header("Content-Type", "multipart/mixed",
                   boundary="=" * 15 + mid.strip("<>").split("@")[0] + "==")
    msg.attach(MIMEText(text, "plain", _text_charset(lines)))
    msg.attach(pdf)
    return msg.as_bytes(policy=POLICY)


def _text_charset(lines: list[str]) -> Charset:
    """utf-8, sent as it is where every line is short (7bit), else quoted-printable (as
    the modern email package chooses)."""
    charset = Charset("utf-8")
    charset.body_encoding = QP if max(map(len, lines)) > 78 else None
    return charset


def alert_text(rng: random.Random, lan_address: str) -> tuple[str, str]:
    """(subject, body) of an ordinary firewall alert."""
    subject, body = rng.choice(ALERTS)
    fill = {"ext": f"198.51.100.{rng.randrange(2, 254)}", "lan": lan_address,
            "n": rng.randrange(12, 400)}
    return subject.format(**fill), body.format(**fill) + "\n"
