"""The firewall's alert mailer: spool alerts as files, deliver them by SMTP, retry.

Each alert is two files in the firewall node's spool, as on the appliance the lab copies:

    /var/spool/mailq/outgoing/smtp/<id>   the envelope: ``key: value`` lines
    /var/spool/mailq/data/<id>            the RFC 5322 message

A runner on the supervisor's loop delivers each new alert at once (alerts written by
``netguard-alert`` inside the node too: it watches the spool with inotify, or scans it
every ``scan_interval`` seconds where it cannot), resolves ``mail_server`` through the
node's own resolver (A record) at every attempt, connects from the node and sends.
Delivered alerts are removed; failed ones stay, with the error in their envelope, and are
retried every ``retry_interval`` seconds; between retries the runner sleeps. Empty spool directories
mean every alert went out. What happens is logged to ``/var/log/netguard/alerts.log``:

    2026-11-25T16:50:01 alert 3f2a... to=<admin@example.net> server=mail.example.net[10.1.0.25]:25 status=sent (250 ...)
    2026-11-25T16:50:11 alert 3f2a... to=<admin@example.net> server=mail.example.net[203.0.113.25]:25 status=deferred (connect to 203.0.113.25:25: Connection timed out)
"""
from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from inotify_simple import INotify, flags

from lab.asyncwait import wait_event
from lab.model.alerts import AlertsConfig
from lab.protocols.fwlog import log_error
from lab.protocols.mxlookup import DnsError, lookup_a
from lab.protocols.smtpclient import SmtpError, send_message
from lab.services.base import NodeContext, Service

SPOOL = "/var/spool/mailq"
ENVELOPE_DIR = f"{SPOOL}/outgoing/smtp"
DATA_DIR = f"{SPOOL}/data"
ALERT_LOG = "/var/log/netguard/alerts.log"
# The notification settings as the node sees them; ``netguard-alert`` reads them.
SETTINGS = "/etc/netguard/alerts.conf"

_ENVELOPE_KEYS = ("from", "to", "server", "created", "attempts", "last_attempt", "last_error")
_REQUIRED = ("from", "to", "server", "created", "attempts")


class SpoolError(ValueError):
    """A spool file that cannot be read as an alert."""


# --------------------------------------------------------------------------------------
# The spool format, shared with ``netguard-alert`` (lab/nodecmds/alert_cli.py)
# --------------------------------------------------------------------------------------


@dataclass
class Envelope:
    """What the mailer knows about one spooled alert besides its message."""

    alert_id: str
    sender: str
    recipient: str
    server: str
    created: datetime
    attempts: int = 0
    last_attempt: datetime | None = None
    last_error: str = ""

    def render(self) -> str:
        def one_line(text: str) -> str:
            return " ".join(text.split())

        stamp = self.last_attempt.isoformat(timespec="seconds") if self.last_attempt else ""
        lines = [
            f"from: {self.sender}",
            f"to: {self.recipient}",
            f"server: {self.server}",
            f"created: {self.created.isoformat(timespec='seconds')}",
            f"attempts: {self.attempts}",
            f"last_attempt: {stamp}",
            f"last_error: {one_line(self.last_error)}",
        ]
        return "\n".join(lines) + "\n"


def _timestamp(text: str, key: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise SpoolError(f"{key}: {text!r} is not a timestamp") from None
    return when if when.tzinfo else when.astimezone()


def parse_envelope(alert_id: str, text: str) -> Envelope:
    """An envelope file's text as an ``Envelope``; ``SpoolError`` says what is wrong."""
    fields: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or key not in _ENVELOPE_KEYS:
            raise SpoolError(f"line {n}: unexpected {line[:40]!r}")
        if key in fields:
            raise SpoolError(f"line {n}: {key} given twice")
        fields[key] = value.strip()
    missing = [k for k in _REQUIRED if not fields.get(k)]
    if missing:
        raise SpoolError(f"missing {', '.join(missing)}")
    for key in ("from", "to"):
        if "@" not in fields[key]:
            raise SpoolError(f"{key}: {fields[key]!r} is not a mail address")
    try:
        attempts = int(fields["attempts"])
    except ValueError:
        raise SpoolError(f"attempts: {fields['attempts']!r} is not a number") from None
    if attempts < 0:
        raise SpoolError(f"attempts: {attempts} is negative")
    last = fields.get("last_attempt", "")
    return Envelope(
        alert_id=alert_id,
        sender=fields["from"],
        recipient=fields["to"],
        server=fields["server"],
        created=_timestamp(fields["created"], "created"),
        attempts=attempts,
        last_attempt=_timestamp(last, "last_attempt") if last else None,
        last_error=fields.get("last_error", ""),
    )


def new_alert_id() -> str:
    return secrets.token_hex(8)


def valid_alert_id(name: str) -> bool:
    return 1 <= len(name) <= 64 and not name.startswith(".") and "/" not in name


def build_message(
    alert_id: str, sender: str, recipient: str, subject: str, body: str, helo: str,
    when: datetime,
) -> bytes:
    """The RFC 5322 alert message (LF line ends; the SMTP client sends CRLF)."""
    msg = EmailMessage(policy=default_policy)
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = " ".join(subject.split()) or "(no subject)"
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = f"<{alert_id}@{helo}>"
    text = body if body.endswith("\n") or not body else body + "\n"
    # 7-bit clean on the wire: the lab's SMTP client does not negotiate 8BITMIME
    msg.set_content(text, cte="7bit" if text.isascii() else "quoted-printable")
    return msg.as_bytes()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write by rename, so a reader never sees half a file. Not fsynced: the spool lives
    and dies with the lab, as the mail queue (lab/protocols/mailq.py), and an alert that
    cannot be delivered is rewritten at every retry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def spool_paths(root: Path, alert_id: str) -> tuple[Path, Path]:
    """(envelope, data) host paths of alert ``alert_id`` under a node root."""
    root = Path(root)
    return (root / ENVELOPE_DIR.lstrip("/") / alert_id, root / DATA_DIR.lstrip("/") / alert_id)


def write_envelope(root: Path, envelope: Envelope) -> None:
    env_path, _ = spool_paths(root, envelope.alert_id)
    _write_atomic(env_path, envelope.render().encode())


def write_alert(
    root: Path,
    subject: str,
    body: str,
    *,
    sender: str,
    recipient: str,
    server: str,
    helo: str,
    when: datetime | None = None,
) -> str:
    """Spool a new alert under node root ``root`` and return its id.

    The message goes first and the envelope last, so a scanner that sees the envelope
    always finds the message.
    """
    when = when or datetime.now().astimezone()
    while True:
        alert_id = new_alert_id()
        env_path, data_path = spool_paths(root, alert_id)
        if not env_path.exists() and not data_path.exists():
            break
    _write_atomic(data_path, build_message(alert_id, sender, recipient, subject, body, helo,
                                           when))
    write_envelope(root, Envelope(alert_id, sender, recipient, server, when))
    return alert_id


def read_alert(root: Path, alert_id: str) -> tuple[Envelope, bytes]:
    """Both files of one alert. ``FileNotFoundError`` if the envelope is gone (delivered),
    ``SpoolError`` if either file is unusable."""
    env_path, data_path = spool_paths(root, alert_id)
    raw = env_path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpoolError("envelope is not UTF-8 text") from None
    envelope = parse_envelope(alert_id, text)
    try:
        message = data_path.read_bytes()
    except FileNotFoundError:
        raise SpoolError(f"no message file {DATA_DIR}/{alert_id}") from None
    if not message.strip():
        raise SpoolError(f"message file {DATA_DIR}/{alert_id} is empty")
    return envelope, message


def spooled_ids(root: Path) -> list[str]:
    """Ids of every alert envelope in the spool, oldest file first."""
    d = Path(root) / ENVELOPE_DIR.lstrip("/")
    try:
        entries = [p for p in d.iterdir() if valid_alert_id(p.name) and p.is_file()]
    except FileNotFoundError:
        return []
    out = []
    for p in entries:
        try:
            out.append((p.stat().st_mtime, p.name))
        except FileNotFoundError:
            continue
    return [name for _, name in sorted(out)]


def remove_alert(root: Path, alert_id: str) -> None:
    env_path, data_path = spool_paths(root, alert_id)
    env_path.unlink(missing_ok=True)
    data_path.unlink(missing_ok=True)


def log_stamp(when: datetime | None = None) -> str:
    return (when or datetime.now()).strftime("%Y-%m-%dT%H:%M:%S")


def append_log(root: Path, message: str, when: datetime | None = None) -> None:
    """One line in the node's alert log, time-stamped."""
    path = Path(root) / ALERT_LOG.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{log_stamp(when)} {message}\n")


def log_queued(alert_id: str, sender: str, recipient: str, subject: str) -> str:
    return f"alert {alert_id} from=<{sender}> to=<{recipient}> queued: {' '.join(subject.split())}"


def log_status(alert_id: str, recipient: str, server: str, status: str, detail: str) -> str:
    """``alert ID to=<r> server=name[addr]:25 status=sent (detail)``."""
    tail = f" ({detail})" if detail else ""
    return f"alert {alert_id} to=<{recipient}> server={server} status={status}{tail}"


def log_malformed(alert_id: str, reason: str) -> str:
    return f"warning: alert {alert_id}: malformed spool file {ENVELOPE_DIR}/{alert_id}: " \
           f"{reason}; skipped"


def write_settings(root: Path, config: AlertsConfig) -> None:
    """The notification settings where ``netguard-alert`` inside the node finds them."""
    text = (
        f"to: {config.to}\nfrom: {config.from_}\nmail_server: {config.mail_server}\n"
        f"helo: {config.helo}\n"
    )
    _write_atomic(Path(root) / SETTINGS.lstrip("/"), text.encode())


def read_settings(root: Path) -> AlertsConfig:
    """The settings the mailer wrote, or the defaults when there are none (or junk)."""
    try:
        text = (Path(root) / SETTINGS.lstrip("/")).read_text()
    except (OSError, UnicodeDecodeError):
        return AlertsConfig()
    fields: dict[str, Any] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("to", "from", "mail_server", "helo"):
            fields[key.strip()] = value.strip()
    try:
        return AlertsConfig.model_validate(fields)
    except ValueError:
        return AlertsConfig()


# --------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------


class AlertMailer(Service):
    """Delivers the firewall's spooled alerts. ``flush()`` tries every alert now."""

    kind = "alerts"

    def __init__(
        self,
        node: NodeContext,
        config: AlertsConfig,
        smtp_port: int = 25,
        dns_port: int = 53,
        *,
        connect_timeout: float = 5.0,
        dns_timeout: float = 2.0,
        session_timeout: float = 60.0,
        scan_interval: float = 1.0,
    ) -> None:
        super().__init__(node)
        self.config = config
        self.smtp_port = smtp_port
        self.dns_port = dns_port
        self.connect_timeout = connect_timeout
        self.dns_timeout = dns_timeout
        self.session_timeout = session_timeout
        self._inflight: dict[str, asyncio.Task] = {}
        self.scan_interval = scan_interval
        self._runner: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        # malformed files already reported, by (id, mtime): report once, not every pass
        self._reported: set[tuple[str, float]] = set()
        # when this mailer last tried each alert, unrounded (the envelope keeps seconds)
        self._tried: dict[str, float] = {}
        self._next_due: float | None = None  # when the next retry is due (lab clock)
        self._sleep_until: float | None = None  # when the runner wakes (None: when woken)
        self._watch: INotify | None = None  # new files in the spool wake the runner

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        for d in (ENVELOPE_DIR, DATA_DIR, os.path.dirname(ALERT_LOG)):
            self.node.path(d).mkdir(parents=True, exist_ok=True)
        write_settings(self.node.root, self.config)
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._watch_spool()
        self._runner = asyncio.get_running_loop().create_task(self._run_forever())

    def _watch_spool(self) -> None:
        try:
            watch = INotify(nonblocking=True)
            watch.add_watch(self.node.path(ENVELOPE_DIR), flags.MOVED_TO | flags.CLOSE_WRITE)
        except OSError:
            return  # scan every scan_interval instead
        self._watch = watch
        asyncio.get_running_loop().add_reader(watch.fileno(), self._spool_changed)

    def _unwatch(self) -> None:
        for close in self.slow_closes():
            close()

    def slow_closes(self) -> list[Callable[[], None]]:
        """The spool's watch: closing an inotify instance waits for the kernel's grace
        period (some 20 ms)."""
        watch, self._watch = self._watch, None
        if watch is None:
            return []
        asyncio.get_running_loop().remove_reader(watch.fileno())
        return [watch.close]

    def _spool_changed(self) -> None:
        """A file landed in the spool: wake the runner if it is an alert it does not know
        (its own rewrites of envelopes are not news)."""
        if self._watch is None:
            return
        try:
            events = self._watch.read(timeout=0)
        except OSError:
            events = []
        if any(e.mask & flags.IGNORED for e in events):  # the directory went away
            self._unwatch()
            self._wake.set()
            return
        known = set(self._tried) | set(self._inflight)
        if any(valid_alert_id(e.name) and e.name not in known for e in events):
            self._wake.set()

    async def stop(self) -> None:
        self._unwatch()
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        self._runner = None
        for task in list(self._inflight.values()):
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)

    async def healthy(self) -> bool:
        if self._runner is None or self._runner.done():
            return False
        return all(self.node.path(d).is_dir() for d in (ENVELOPE_DIR, DATA_DIR))

    # ---- raising and listing ---------------------------------------------------------

    def raise_alert(self, subject: str, body: str = "") -> str:
        """Spool one alert, wake the runner, return the alert's id."""
        alert_id = write_alert(
            self.node.root, subject, body, sender=self.config.from_,
            recipient=self.config.to, server=self.config.mail_server, helo=self.config.helo,
            when=self.node.clock.now(),
        )
        self.log(log_queued(alert_id, self.config.from_, self.config.to, subject))
        self._wake.set()
        return alert_id

    def spooled(self) -> list[str]:
        """Ids of the alerts waiting in the spool."""
        return spooled_ids(self.node.root)

    def log(self, message: str) -> None:
        append_log(self.node.root, message, self.node.clock.now())

    # ---- delivery --------------------------------------------------------------------

    async def flush(self) -> None:
        """One delivery pass over every spooled alert, now; returns when it is done."""
        async with self._lock:
            await self._pass(due_only=False)

    async def _run_forever(self) -> None:
        """A pass over the spool, then sleep until the next retry is due, a new alert
        arrives, or (without a watch on the spool) the next scan."""
        while True:
            self._wake.clear()
            try:
                async with self._lock:
                    await self._pass(due_only=True)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - keep the runner alive; next pass retries
                self.log(f"warning: alert run failed: {e!r}")
            wait = None
            if self._next_due is not None:
                wait = max(0.0, self._next_due - self.node.clock.time())
            if self._watch is None:
                wait = self.scan_interval if wait is None else min(wait, self.scan_interval)
            self._sleep_until = None if wait is None else self.node.clock.time() + wait
            await wait_event(self._wake, wait)

    def _due_at(self, envelope: Envelope, now: datetime) -> float:
        """When (lab clock) the alert's next attempt is due; now or earlier: due."""
        if envelope.attempts == 0 or envelope.last_attempt is None:
            return 0.0
        last = self._tried.get(envelope.alert_id, envelope.last_attempt.timestamp())
        if last > now.timestamp():  # tried "later" than now: the clock was set back
            return 0.0
        return last + self.config.retry_interval

    async def _pass(self, due_only: bool) -> None:
        now = self.node.clock.now()
        todo: list[tuple[Envelope, bytes]] = []
        later: list[float] = []
        for alert_id in spooled_ids(self.node.root):
            try:
                envelope, message = read_alert(self.node.root, alert_id)
            except FileNotFoundError:
                continue  # delivered or removed by hand meanwhile
            except (SpoolError, OSError) as e:
                self._report(alert_id, str(e))
                continue
            due = self._due_at(envelope, now)
            if not due_only or due <= now.timestamp():
                todo.append((envelope, message))
            else:
                later.append(due)
        self._next_due = min(later, default=None)
        # each alert is delivered by a task of its own, so that one slow session (a lossy
        # link, a server that stalls) never holds up the alerts raised after it
        for envelope, message in todo:
            if envelope.alert_id in self._inflight:
                continue
            task = asyncio.ensure_future(self._deliver_one(envelope, message))
            self._inflight[envelope.alert_id] = task
            task.add_done_callback(lambda _t, a=envelope.alert_id: self._inflight.pop(a, None))
        if not due_only:
            await asyncio.gather(*self._inflight.values())
        present = set(spooled_ids(self.node.root))
        for alert_id in [a for a in self._tried if a not in present]:
            del self._tried[alert_id]

    async def _deliver_one(self, envelope: Envelope, message: bytes) -> None:
        try:
            await self._deliver(envelope, message)
        except OSError as e:  # the spool itself: report, keep going
            self.log(f"warning: alert {envelope.alert_id}: {e}")

    def _report(self, alert_id: str, reason: str) -> None:
        env_path, _ = spool_paths(self.node.root, alert_id)
        try:
            key = (alert_id, env_path.stat().st_mtime)
        except OSError:
            key = (alert_id, 0.0)
        if key not in self._reported:
            self._reported.add(key)
            self.log(log_malformed(alert_id, reason))

    async def _addresses(self, name: str) -> list[str]:
        try:
            ipaddress.IPv4Address(name)
            return [name]
        except ValueError:
            pass
        return await lookup_a(self.node, name, port=self.dns_port, timeout=self.dns_timeout)

    async def _deliver(self, envelope: Envelope, message: bytes) -> None:
        """One attempt at one alert: resolve, connect, send; then remove or record."""
        name = self.config.mail_server
        port = self.smtp_port
        server = f"{name}:{port}"
        try:
            addresses = await self._addresses(name)
        except DnsError as e:
            self._failed(envelope, name, server, e.reason)
            return
        error = ""
        for addr in addresses:
            server = f"{name}[{addr}]:{port}"
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            try:
                result = await send_message(
                    self.node.socket(family, socket.SOCK_STREAM), (addr, port),
                    envelope.sender, [envelope.recipient], message,
                    helo_name=self.config.helo, connect_timeout=self.connect_timeout,
                    timeout=self.session_timeout,
                )
            except SmtpError as e:
                if e.stage == "connect":
                    error = f"connect to {addr}:{port}: {e.detail}"
                    continue  # the next address may answer
                if e.reply is None:
                    error = f"lost connection with {name}[{addr}] ({e.detail})"
                    continue
                error = f"host {name}[{addr}] said: {e.reply} (in reply to {e.stage} command)"
                break
            if result.reply is None:
                reply = result.refused.get(envelope.recipient)
                error = f"host {name}[{addr}] said: {reply} (in reply to RCPT TO command)"
                break
            remove_alert(self.node.root, envelope.alert_id)
            self.log(log_status(envelope.alert_id, envelope.recipient, server, "sent",
                                str(result.reply)))
            return
        self._failed(envelope, name, server, error or "no address to try")

    def _failed(self, envelope: Envelope, name: str, server: str, error: str) -> None:
        env_path, _ = spool_paths(self.node.root, envelope.alert_id)
        envelope.server = name
        envelope.attempts += 1
        envelope.last_attempt = self.node.clock.now()
        self._tried[envelope.alert_id] = envelope.last_attempt.timestamp()
        envelope.last_error = error
        if env_path.exists():  # not removed by hand while we tried
            write_envelope(self.node.root, envelope)
        self.log(log_status(envelope.alert_id, envelope.recipient, server, "deferred", error))
        log_error(self.node, "alerts", f"alert {envelope.alert_id} to <{envelope.recipient}> "
                  f"not delivered via {server}: {error}; kept in the spool")
        due = envelope.last_attempt.timestamp() + self.config.retry_interval
        if self._sleep_until is None or due < self._sleep_until:
            self._wake.set()  # the runner would sleep past this one's retry


__all__ = [
    "ALERT_LOG",
    "DATA_DIR",
    "ENVELOPE_DIR",
    "AlertMailer",
    "Envelope",
    "SpoolError",
    "append_log",
    "build_message",
    "log_malformed",
    "log_queued",
    "log_status",
    "parse_envelope",
    "read_alert",
    "read_settings",
    "remove_alert",
    "spooled_ids",
    "write_alert",
    "write_settings",
]
