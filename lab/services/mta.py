"""The SMTP service: a small Postfix look-alike that a trainee can talk to with telnet.

It accepts mail for its domains' users into mbox files, relays for its relay networks
through a queue on disk (MX lookup through the node's own resolver, retries, bounces),
and logs what it does to the node's ``/var/log/mail.log`` in Postfix's words, because
reading that log is part of what the lab teaches.

The SMTP protocol itself is aiosmtpd's ``SMTP`` class on listening sockets made with
``node.socket()``; everything runs on the supervisor's loop (no threads, no Controller).
The log wording lives in :mod:`lab.services.maillog`, stored messages and mailbox
appends in :mod:`lab.services.mbox`; their public names are re-exported here.
"""
from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from ipaddress import ip_address
from typing import Any

from aiosmtpd.smtp import SMTP

from lab.model.mta import MtaConfig
from lab.services import mailq
from lab.services.base import NodeContext, Service
from lab.services.maillog import (
    UNRECOGNISED,
    client_name,
    format_delay,
    log_bounce,
    log_client,
    log_connect,
    log_delivery,
    log_disconnect,
    log_expired,
    log_lost,
    log_message_id,
    log_queued,
    log_reject,
    log_removed,
    postfix_reply,
    syslog_line,
)
from lab.services.mailq import QueueEntry
from lab.services.mbox import (
    MailboxBusy,
    append_locked,
    bounce_message,
    mbox_entry,
    message_id_of,
    received_header,
)
from lab.services.mxlookup import DnsError, lookup_mx
from lab.services.smtpclient import Reply, SmtpError, send_message

MAIL_LOG = "/var/log/mail.log"
MAIL_DIR = "/var/mail"


def dsn_of(reply: Reply) -> str:
    """The enhanced status code in a reply, or one derived from its class."""
    m = re.match(r"^([245]\.\d{1,3}\.\d{1,3})\b", reply.text)
    if m:
        return m.group(1)
    return {2: "2.0.0", 4: "4.0.0"}.get(reply.code // 100, "5.0.0")


# --------------------------------------------------------------------------------------
# The SMTP server side
# --------------------------------------------------------------------------------------


class _Session(SMTP):
    """aiosmtpd's protocol with Postfix's replies, per-session counters and logging."""

    def __init__(self, service: MtaService, **kw: Any) -> None:
        super().__init__(_Handler(service), **kw)
        self.service = service
        self.client_ip = "unknown"
        self.counts: dict[str, list[int]] = {}
        self.last_command = "CONNECT"
        self.quit = False
        self.timed_out = False
        self._last_code = 0
        for name, method in list(self._smtp_methods.items()):
            self._smtp_methods[name] = self._counted(name, method)

    def _counted(self, name: str, method: Any) -> Any:
        async def run(arg: str | None) -> None:
            self.last_command = name
            self._last_code = 0
            try:
                await method(arg)
            finally:
                c = self.counts.setdefault(name.lower(), [0, 0])
                c[0] += 200 <= self._last_code < 400
                c[1] += 1

        run.__dict__.update(getattr(method, "__dict__", {}))  # keeps HELP's syntax info
        return run

    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            if UNRECOGNISED.match(status):
                self.counts.setdefault("unknown", [0, 0])[1] += 1
            status = postfix_reply(status)
            self._last_code = int(status[:3]) if status[:3].isdigit() else 0
        await super().push(status)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if isinstance(peer, tuple) else "unknown"
        self.service._sessions.add(self)
        self.service.log("smtpd", log_connect(self.client_ip))
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self in self.service._sessions:
            self.service._sessions.discard(self)
            if not self.quit:
                self.service.log("smtpd", log_lost(self.client_ip, self.last_command,
                                                   self.timed_out))
            counts = {k: (v[0], v[1]) for k, v in self.counts.items()}
            self.service.log("smtpd", log_disconnect(self.client_ip, counts))
        super().connection_lost(error)

    def _timeout_cb(self) -> None:
        self.timed_out = True
        super()._timeout_cb()

    async def _handle_client(self) -> None:
        limit = self.service.config.max_sessions
        if len(self.service._sessions) > limit:
            await self.push(
                f"421 4.7.0 {self.hostname} Error: too many connections from {self.client_ip}"
            )
            self.quit = True
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()


class _Handler:
    """aiosmtpd hooks: the policy (who may send what to whom) and the hand-off to the queue."""

    def __init__(self, service: MtaService) -> None:
        self.service = service

    async def handle_MAIL(
        self, server: _Session, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: _Session, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        svc = self.service
        sender = _unbracket(envelope.mail_from)
        reply = svc.check_recipient(address, server.client_ip)
        if reply is not None:
            proto = "ESMTP" if session.extended_smtp else "SMTP"
            svc.log("smtpd", log_reject(server.client_ip, reply, sender, address, proto,
                                        session.host_name or ""))
            return reply
        envelope.rcpt_tos.append(svc.canonical(address))
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: _Session, session: Any, envelope: Any) -> str:
        proto = "ESMTP" if session.extended_smtp else "SMTP"
        qid = await self.service.accept(
            sender=_unbracket(envelope.mail_from),
            rcpts=list(envelope.rcpt_tos),
            content=envelope.original_content,
            client_ip=server.client_ip,
            helo=session.host_name or "unknown",
            proto=proto,
        )
        return f"250 2.0.0 Ok: queued as {qid}"

    async def handle_QUIT(self, server: _Session, session: Any, envelope: Any) -> str:
        server.quit = True
        return "221 2.0.0 Bye"

    async def handle_RSET(self, server: _Session, session: Any, envelope: Any) -> str:
        return "250 2.0.0 Ok"

    async def handle_NOOP(self, server: _Session, session: Any, envelope: Any, arg: str) -> str:
        return "250 2.0.0 Ok"

    async def handle_exception(self, error: Exception) -> str:
        """A failure of ours (disk full, ...): log it, and tell the client to retry later."""
        self.service.log("smtpd", f"warning: {type(error).__name__}: {error}")
        return "451 4.3.0 Error: queue file write error"


def _unbracket(address: str | None) -> str:
    """The null sender arrives from aiosmtpd as ``<>``; the envelope keeps it as ``''``."""
    return "" if not address or address == "<>" else address


# --------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one delivery attempt did for one recipient."""

    status: str  # sent | deferred | bounced
    relay: str
    dsn: str
    detail: str


class MtaService(Service):
    """A node's mail server. ``flush()`` is ``postqueue -f``: deliver the queue now."""

    kind = "smtp"

    def __init__(
        self,
        node: NodeContext,
        config: MtaConfig,
        port: int = 25,
        remote_port: int = 25,
        dns_port: int = 53,
        *,
        loopback_relay: bool = True,
        connect_timeout: float = 30.0,
        dns_timeout: float = 2.0,
        session_timeout: float = 300.0,
    ) -> None:
        super().__init__(node)
        self.config = config
        self.port = port
        self.remote_port = remote_port
        self.dns_port = dns_port
        self.loopback_relay = loopback_relay
        self.connect_timeout = connect_timeout
        self.dns_timeout = dns_timeout
        self.session_timeout = session_timeout
        self.spool = mailq.spool_path(node.root)
        self._servers: list[asyncio.AbstractServer] = []
        self._sessions: set[_Session] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._busy: set[str] = set()
        self._runner: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._pid = os.getpid()
        self._users = set(config.users)
        self._domains = set(config.domains)

    def reconfigure(self, config: MtaConfig) -> None:
        """Replace the config, as ``postfix reload`` rereads main.cf: sessions and RCPT
        checks from now on use it; sockets, the queue and open sessions stay."""
        self.config = config
        self._users = set(config.users)
        self._domains = set(config.domains)

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for d in (MAIL_DIR, os.path.dirname(MAIL_LOG)):
            self.node.path(d).mkdir(parents=True, exist_ok=True)
        for q in mailq.QUEUES:
            (self.spool / q).mkdir(parents=True, exist_ok=True)
        try:
            for addr in self.node.addresses:
                family = socket.AF_INET6 if ":" in addr else socket.AF_INET
                sock = self.node.socket(family, socket.SOCK_STREAM)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind((addr, self.port))
                except OSError:
                    sock.close()
                    raise
                server = await loop.create_server(self._protocol, sock=sock, backlog=128)
                self._servers.append(server)
        except OSError:
            await self.stop()
            raise
        self._wake = asyncio.Event()
        self._runner = loop.create_task(self._run_forever())

    def _protocol(self) -> _Session:
        return _Session(
            self,
            hostname=self.config.hostname,
            ident="ESMTP",
            data_size_limit=self.config.message_size_limit,
            timeout=self.session_timeout,
            loop=asyncio.get_running_loop(),
        )

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        tasks = [t for t in [self._runner, *self._tasks] if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runner = None
        self._tasks.clear()
        self._busy.clear()

    async def healthy(self) -> bool:
        if not self.node.addresses:
            return False
        addr = self.node.addresses[0]
        sock = self.node.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
        writer = None
        try:
            async with asyncio.timeout(1.0):
                await asyncio.get_running_loop().sock_connect(sock, (addr, self.port))
                reader, writer = await asyncio.open_connection(sock=sock)
                banner = await reader.readline()
                writer.write(b"QUIT\r\n")
                await writer.drain()
            return banner.startswith(b"220 ")
        except (TimeoutError, OSError):
            return False
        finally:
            if writer is not None:
                writer.close()
            else:
                sock.close()

    # ---- logging ---------------------------------------------------------------------

    def log(self, program: str, message: str) -> None:
        line = syslog_line(datetime.now(), self.node.name, program, self._pid, message)
        path = self.node.path(MAIL_LOG)
        try:
            with open(path, "a") as f:
                f.write(line + "\n")
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(line + "\n")

    # ---- policy ----------------------------------------------------------------------

    def canonical(self, address: str) -> str:
        """A bare local part (``rcpt to: jsmith``) means the first local domain."""
        return address if "@" in address else f"{address}@{self.config.domains[0]}"

    def local_user(self, address: str) -> str | None:
        """The mailbox name if ``address`` is in a local domain, else None."""
        local, _, domain = self.canonical(address).rpartition("@")
        return local.lower() if domain.lower().rstrip(".") in self._domains else None

    def may_relay(self, client_ip: str) -> bool:
        try:
            ip = ip_address(client_ip)
        except ValueError:
            return False
        if self.loopback_relay and ip.is_loopback:
            return True
        return any(ip in net for net in self.config.relay_networks)

    def check_recipient(self, address: str, client_ip: str) -> str | None:
        """None if RCPT TO ``address`` is accepted from ``client_ip``, else Postfix's reply."""
        user = self.local_user(address)
        if user is not None:
            if user in self._users:
                return None
            return (
                f"550 5.1.1 <{address}>: Recipient address rejected: "
                "User unknown in local recipient table"
            )
        if self.may_relay(client_ip):
            return None
        return f"554 5.7.1 <{address}>: Relay access denied"

    # ---- receiving -------------------------------------------------------------------

    async def accept(
        self,
        sender: str,
        rcpts: list[str],
        content: bytes,
        client_ip: str,
        helo: str,
        proto: str,
    ) -> str:
        """Queue a received message, deliver its local part now, and return its queue id."""
        now = time.time()
        qid = mailq.new_queue_id(self.spool)
        self.log("smtpd", log_client(qid, client_ip))
        body = content.replace(b"\r\n", b"\n")
        header = received_header(
            helo, client_ip, self.config.hostname, qid, proto, rcpts,
            datetime.fromtimestamp(now).astimezone(),
        )
        message = header.encode() + body
        self.log("cleanup", log_message_id(qid, message_id_of(body)))
        self._enqueue(QueueEntry(qid, sender, rcpts, now, len(message), client_ip), message)
        await self._deliver(qid, local_only=True)
        if qid not in self._busy and any(self.local_user(r) is None for r in rcpts):
            self._spawn(self._deliver(qid))
        return qid

    def _enqueue(self, entry: QueueEntry, message: bytes) -> None:
        mailq.write_entry(self.spool, entry, message)
        self.log("qmgr", log_queued(entry.queue_id, entry.sender, entry.size,
                                    len(entry.recipients)))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- the queue -------------------------------------------------------------------

    async def flush(self) -> None:
        """Attempt every queued message now (``postqueue -f``) and wait for the result."""
        await self._run_queue(due_only=False)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def queue(self) -> list[QueueEntry]:
        """The messages waiting in the queue, oldest first."""
        return mailq.list_entries(self.spool)

    async def _run_forever(self) -> None:
        while True:
            try:
                await self._run_queue(due_only=True)
            except Exception as e:  # noqa: BLE001 - keep the runner alive; next pass retries
                self.log("qmgr", f"warning: queue run failed: {e}")
            now = time.time()
            due = [e.next_attempt for e in self.queue() if e.queue_id not in self._busy]
            wait = self.config.retry_interval
            if due:
                wait = min(wait, max(0.05, min(due) - now))
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _run_queue(self, due_only: bool) -> None:
        now = time.time()
        entries = [
            e for e in self.queue()
            if e.queue_id not in self._busy and (not due_only or e.next_attempt <= now)
        ]
        limit = asyncio.Semaphore(10)

        async def one(qid: str) -> None:
            async with limit:
                await self._deliver(qid)

        await asyncio.gather(*(one(e.queue_id) for e in entries), return_exceptions=True)

    def _find(self, qid: str) -> tuple[QueueEntry, bytes] | None:
        for q in mailq.QUEUES:
            path = self.spool / q / qid
            if path.exists():
                try:
                    return mailq.read_entry(path)
                except (OSError, ValueError):
                    return None
        return None

    async def _deliver(self, qid: str, local_only: bool = False) -> None:
        """One delivery attempt for every pending recipient of message ``qid``."""
        if qid in self._busy:
            return
        self._busy.add(qid)
        try:
            await self._attempt(qid, local_only)
        except Exception as e:  # noqa: BLE001 - one bad message must not stop the queue
            self.log("qmgr", f"warning: {qid}: delivery attempt failed: {e!r}")
            found = self._find(qid)
            if found is not None:  # do not retry it at once, in a tight loop
                entry, message = found
                entry.next_attempt = time.time() + self.config.retry_interval
                try:
                    mailq.write_entry(self.spool, entry, message)
                except OSError:
                    pass
        finally:
            self._busy.discard(qid)

    async def _attempt(self, qid: str, local_only: bool) -> None:
        found = self._find(qid)
        if found is None:
            return
        entry, message = found
        local = [r for r in entry.recipients if self.local_user(r) is not None]
        remote = [] if local_only else [r for r in entry.recipients if r not in local]
        outcomes: dict[str, Outcome] = {}
        for rcpt in local:
            outcomes[rcpt] = await self._deliver_local(entry, message, rcpt)
        by_domain: dict[str, list[str]] = {}
        for rcpt in remote:
            by_domain.setdefault(rcpt.rpartition("@")[2].lower(), []).append(rcpt)
        for domain, rcpts in by_domain.items():
            outcomes.update(await self._deliver_remote(entry, message, domain, rcpts))
        self._settle(entry, message, outcomes)

    def _settle(self, entry: QueueEntry, message: bytes, outcomes: dict[str, Outcome]) -> None:
        now = time.time()
        delay = now - entry.arrival
        for rcpt, o in outcomes.items():
            program = "local" if o.relay == "local" else "smtp"
            self.log(program, log_delivery(entry.queue_id, rcpt, o.relay, delay, o.dsn,
                                           o.status, o.detail))
        deferred = [r for r, o in outcomes.items() if o.status == "deferred"]
        failed = {r: (o.dsn, o.detail) for r, o in outcomes.items() if o.status == "bounced"}
        if deferred and delay >= self.config.bounce_after:
            self.log("qmgr", log_expired(entry.queue_id, entry.sender))
            for r in deferred:
                failed[r] = (outcomes[r].dsn, outcomes[r].detail)
            deferred = []
        if failed:
            self._bounce(entry, message, failed)
        pending = [r for r in entry.recipients if r not in outcomes or r in deferred]
        if not pending:
            mailq.remove_entry(self.spool, entry.queue_id)
            self.log("qmgr", log_removed(entry.queue_id))
            return
        entry.recipients = pending
        entry.reasons = {
            r: (outcomes[r].detail if r in outcomes else entry.reasons.get(r, ""))
            for r in pending
            if r in outcomes or r in entry.reasons
        }
        if deferred:
            entry.queue = "deferred"
            entry.attempts += 1
            entry.next_attempt = now + self.config.retry_interval
        mailq.write_entry(self.spool, entry, message)

    def _bounce(self, entry: QueueEntry, message: bytes,
                failed: dict[str, tuple[str, str]]) -> None:
        if not entry.sender:
            self.log("bounce",
                     f"{entry.queue_id}: null sender, non-delivery notification discarded")
            return
        now = time.time()
        qid = mailq.new_queue_id(self.spool)
        dsn = bounce_message(self.config.hostname, entry.queue_id, entry.sender,
                             entry.arrival, failed, message, now)
        self.log("cleanup", log_message_id(qid, message_id_of(dsn)))
        self.log("bounce", log_bounce(entry.queue_id, qid))
        self._enqueue(QueueEntry(qid, "", [entry.sender], now, len(dsn)), dsn)
        self._spawn(self._deliver(qid))

    # ---- delivery --------------------------------------------------------------------

    async def _deliver_local(self, entry: QueueEntry, message: bytes, rcpt: str) -> Outcome:
        user = self.local_user(rcpt)
        assert user is not None
        if user not in self._users:
            return Outcome("bounced", "local", "5.1.1",
                           f"unknown user: \"{user}\"")
        path = self.node.path(f"{MAIL_DIR}/{user}")
        data = mbox_entry(entry.sender, rcpt, message, time.time())
        try:
            await append_locked(path, data)
        except MailboxBusy:
            return Outcome(
                "deferred", "local", "4.2.0",
                f"cannot update mailbox {MAIL_DIR}/{user} for user {user}. "
                "unable to lock for exclusive access: Resource temporarily unavailable",
            )
        except OSError as e:
            return Outcome("deferred", "local", "4.2.0",
                           f"cannot update mailbox {MAIL_DIR}/{user} for user {user}. "
                           f"{e.strerror or e}")
        return Outcome("sent", "local", "2.0.0", "delivered to mailbox")

    async def _deliver_remote(
        self, entry: QueueEntry, message: bytes, domain: str, rcpts: list[str]
    ) -> dict[str, Outcome]:
        def every(o: Outcome) -> dict[str, Outcome]:
            return {r: o for r in rcpts}

        try:
            mxs = await lookup_mx(self.node, domain, port=self.dns_port, timeout=self.dns_timeout)
        except DnsError as e:
            if e.temporary:
                return every(Outcome("deferred", "none", "4.4.3", e.reason))
            return every(Outcome("bounced", "none", "5.4.4", e.reason))
        last = Outcome("deferred", "none", "4.4.1", f"delivery to {domain} failed")
        for mx in mxs:
            for addr in mx.addresses:
                relay = f"{mx.name}[{addr}]:{self.remote_port}"
                if addr in self.node.addresses and self.remote_port == self.port:
                    return every(Outcome("bounced", relay, "5.4.6",
                                         f"mail for {domain} loops back to myself"))
                family = socket.AF_INET6 if ":" in addr else socket.AF_INET
                try:
                    result = await send_message(
                        self.node.socket(family, socket.SOCK_STREAM), (addr, self.remote_port),
                        entry.sender, rcpts, message, helo_name=self.config.hostname,
                        connect_timeout=self.connect_timeout,
                    )
                except SmtpError as e:
                    if e.reply is None:  # no SMTP answer: try the next address
                        last = Outcome("deferred", "none", "4.4.1",
                                       f"connect to {mx.name}[{addr}]:{self.remote_port}: "
                                       f"{e.detail}"
                                       if e.stage == "connect" else
                                       f"lost connection with {mx.name}[{addr}] ({e.detail})")
                        continue
                    if e.stage == "greeting" and e.reply.temporary:
                        last = Outcome("deferred", relay, dsn_of(e.reply),
                                       f"host {mx.name}[{addr}] refused to talk to me: {e.reply}")
                        continue
                    status = "deferred" if e.reply.temporary else "bounced"
                    return every(Outcome(status, relay, dsn_of(e.reply),
                                         f"host {mx.name}[{addr}] said: {e.reply} "
                                         f"(in reply to {e.stage} command)"))
                out: dict[str, Outcome] = {}
                for r in result.accepted:
                    assert result.reply is not None
                    out[r] = Outcome("sent", relay, dsn_of(result.reply), str(result.reply))
                for r, reply in result.refused.items():
                    status = "deferred" if reply.temporary else "bounced"
                    out[r] = Outcome(status, relay, dsn_of(reply),
                                     f"host {mx.name}[{addr}] said: {reply} "
                                     f"(in reply to RCPT TO command)")
                return out
        return every(last)


__all__ = [
    "MAIL_DIR",
    "MAIL_LOG",
    "MailboxBusy",
    "MtaService",
    "Outcome",
    "bounce_message",
    "client_name",
    "format_delay",
    "log_bounce",
    "log_client",
    "log_connect",
    "log_delivery",
    "log_disconnect",
    "log_expired",
    "log_lost",
    "log_message_id",
    "log_queued",
    "log_reject",
    "log_removed",
    "mbox_entry",
    "message_id_of",
    "postfix_reply",
    "received_header",
    "syslog_line",
]
