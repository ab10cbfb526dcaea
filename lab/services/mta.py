"""The SMTP service: a small Postfix look-alike that a trainee can talk to with telnet.

It accepts mail for its domains' users into mbox files, relays for its relay networks
through a queue on disk (MX lookup through the node's own resolver, retries, bounces),
offers STARTTLS with the lab CA's certificate for its name, and logs what it does to the
node's ``/var/log/mail.log`` in Postfix's words, because reading that log is part of what
the lab teaches.

The protocol is :mod:`lab.protocols.smtpd` (this module gives it the policy: who may send
what to whom), the queue :mod:`lab.protocols.mtaqueue`, the delivery agents
:mod:`lab.protocols.delivery`, the log wording :mod:`lab.protocols.maillog`. Everything runs
on the supervisor's loop (no threads).
"""
from __future__ import annotations

import asyncio
import socket
import ssl
from datetime import datetime
from ipaddress import ip_address
from pathlib import Path

from lab.model.mta import MtaConfig
from lab.protocols import mailq
from lab.protocols.maillog import (
    PseudoPids,
    log_client,
    log_message_id,
    log_reject,
    syslog_line,
)
from lab.protocols.mailq import QueueEntry
from lab.protocols.mbox import message_id_of, received_header
from lab.protocols.mtaqueue import QueueManager
from lab.protocols.smtpd import Session, Smtpd, SmtpdHooks
from lab.protocols.tlsca import TRUST_BUNDLE, ServerTls, client_context
from lab.services.base import NodeContext, Service

MAIL_LOG = "/var/log/mail.log"
MAIL_DIR = "/var/mail"


class MtaSmtpd(SmtpdHooks):
    """The mail server's side of each SMTP session: anvil's per-client limit, the
    recipient checks, and the hand-off to the queue."""

    def __init__(self, mta: MtaService) -> None:
        self.mta = mta
        self.per_client: dict[str, int] = {}
        self.processes = asyncio.Semaphore(mta.config.process_limit)

    @property
    def hostname(self) -> str:  # type: ignore[override]
        return self.mta.config.hostname

    def size_limit(self, session: Session) -> int:
        return self.mta.config.message_size_limit

    def tls_context(self) -> ssl.SSLContext | None:
        return self.mta.server_tls()

    def log(self, session: Session, message: str) -> None:
        self.mta.log("smtpd", message, session.pid)

    def new_pid(self) -> int:
        return self.mta.pids.new()

    async def connect(self, session: Session) -> str | None:
        # a client beyond the process limit waits for a free smtpd, as with Postfix's master
        await self.processes.acquire()
        session.context["process"] = True
        ip = session.client_ip
        count = self.per_client.get(ip, 0) + 1
        self.per_client[ip] = count
        limit = self.mta.config.client_connection_limit
        if limit and count > limit and not self.mta.trusted(ip):
            self.log(session, f"warning: Connection concurrency limit exceeded: {count} from "
                              f"{session.name} for service smtp")
            return f"421 4.7.0 {self.hostname} Error: too many connections from {ip}"
        return None

    async def disconnect(self, session: Session) -> None:
        ip = session.client_ip
        if ip in self.per_client:
            self.per_client[ip] -= 1
            if self.per_client[ip] <= 0:
                del self.per_client[ip]
        if session.context.pop("process", False):
            self.processes.release()

    async def rcpt(self, session: Session, address: str) -> str:
        reply = self.mta.check_recipient(address, session.client_ip)
        if reply is None:
            return "250 2.1.5 Ok"
        self.log(session, log_reject(session.client_ip, reply, session.sender or "",
                                     address, session.proto, session.helo or ""))
        return reply

    async def verify(self, session: Session, address: str, as_given: str) -> str:
        user = self.mta.local_user(address)
        if user is not None and user not in self.mta.config.users:
            reply = (f"550 5.1.1 <{address}>: Recipient address rejected: "
                     "User unknown in local recipient table")
            self.log(session, f"NOQUEUE: reject: VRFY from {session.name}: {reply}; "
                              f"to=<{address}> proto={session.proto} helo=<{session.helo or ''}>")
            return reply
        return f"252 2.0.0 {as_given}"

    async def data(self, session: Session, content: bytes) -> str:
        try:
            qid = await self.mta.accept(session.sender or "", list(session.rcpts), content,
                                        session, received=self.mta.node.clock.time())
        except OSError as e:
            self.log(session, f"warning: queue file write error: {e}")
            return "451 4.3.0 Error: queue file write error"
        return f"250 2.0.0 Ok: queued as {qid}"


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
        connect_timeout: float | None = None,
        dns_timeout: float = 2.0,
        session_timeout: float = 300.0,
        tls: ServerTls | None = None,
        error_sleep: float = 1.0,
    ) -> None:
        super().__init__(node)
        self.config = config
        self.port = port
        self.remote_port = remote_port
        self.dns_port = dns_port
        self.loopback_relay = loopback_relay
        self.connect_timeout = connect_timeout
        self.dns_timeout = dns_timeout
        self.tls = tls
        self.trust_file = tls.trust_file if tls else node.path(TRUST_BUNDLE)
        self.pids = PseudoPids(f"{node.name}/{node.root}")
        self.queue_manager = QueueManager(self)
        self.hooks = MtaSmtpd(self)
        self.smtpd = Smtpd(self.hooks, timeout=session_timeout, error_sleep=error_sleep)
        self._servers: list[asyncio.AbstractServer] = []
        self._sessions: set[asyncio.Task] = set()
        self._server_tls: ssl.SSLContext | None = None
        self._client_tls: ssl.SSLContext | None = None

    @property
    def smtp_connect_timeout(self) -> float:
        """How long the client waits for a connection: the config's, unless the service
        was made with its own (tests)."""
        if self.connect_timeout is not None:
            return self.connect_timeout
        return self.config.smtp_connect_timeout

    def reconfigure(self, config: MtaConfig) -> None:
        """Replace the config, as ``postfix reload`` rereads main.cf: sessions and RCPT
        checks from now on use it; sockets, the queue and open sessions stay."""
        self.config = config

    # ---- TLS -------------------------------------------------------------------------

    def reload_tls(self) -> None:
        """Read the certificate files again (``postfix reload`` after replacing them)."""
        self._server_tls = self.tls.server_context() if self.tls else None
        self._client_tls = client_context(self.trust_file)

    def server_tls(self) -> ssl.SSLContext | None:
        if self.config.smtpd_tls_security_level == "none":
            return None
        return self._server_tls

    def client_tls(self) -> ssl.SSLContext | None:
        return self._client_tls

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        for d in (MAIL_DIR, str(Path(MAIL_LOG).parent)):
            self.node.path(d).mkdir(parents=True, exist_ok=True)
        self.reload_tls()
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
                server = await asyncio.start_server(self._session, sock=sock, backlog=128)
                self._servers.append(server)
        except OSError:
            await self.stop()
            raise
        await self.queue_manager.start()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._sessions.add(task)
        try:
            await self.smtpd.serve(reader, writer)
        finally:
            self._sessions.discard(task)
            # a session cancelled by stop() closes its connection too: the server's
            # wait_closed() waits for every connection it accepted to be closed
            writer.close()

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        await self.queue_manager.stop()

    async def healthy(self) -> bool:
        """The listeners accept connections (kernel state) and the queue manager runs.

        No test session: Postfix logs every connection, and a health check must not
        write connect/disconnect pairs into the mail log a trainee reads."""
        if not self._servers or not self.queue_manager.running:
            return False
        return all(s.is_serving() and all(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) for sock in s.sockets)
            for s in self._servers)

    # ---- logging ---------------------------------------------------------------------

    def log(self, program: str, message: str, pid: int | None = None) -> None:
        line = syslog_line(self.node.clock.now(), self.node.name, program,
                           pid if pid is not None else self.pids.of(program), message)
        path = self.node.path(MAIL_LOG)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="ascii", errors="replace") as f:
            f.write(line + "\n")

    # ---- policy ----------------------------------------------------------------------

    def canonical(self, address: str) -> str:
        """A bare local part (``rcpt to: jsmith``) means the first local domain."""
        return address if "@" in address else f"{address}@{self.config.domains[0]}"

    def local_user(self, address: str) -> str | None:
        """The mailbox name if ``address`` is in a local domain, else None."""
        local, _, domain = self.canonical(address).rpartition("@")
        return local.lower() if domain.lower().rstrip(".") in self.config.domains else None

    def trusted(self, client_ip: str) -> bool:
        """In mynetworks: loopback (unless disabled) and the relay networks."""
        try:
            ip = ip_address(client_ip)
        except ValueError:
            return False
        if self.loopback_relay and ip.is_loopback:
            return True
        return any(ip in net for net in self.config.relay_networks)

    may_relay = trusted

    def check_recipient(self, address: str, client_ip: str) -> str | None:
        """None if RCPT TO ``address`` is accepted from ``client_ip``, else Postfix's reply:
        local mailboxes, any address of a relay domain, anything from a trusted client."""
        user = self.local_user(address)
        if user is not None:
            if user in self.config.users:
                return None
            return (f"550 5.1.1 <{address}>: Recipient address rejected: "
                    "User unknown in local recipient table")
        if self.may_relay(client_ip) or self.config.relays_for(self.canonical(address)
                                                               .rpartition("@")[2]):
            return None
        return f"554 5.7.1 <{address}>: Relay access denied"

    # ---- receiving -------------------------------------------------------------------

    async def accept(self, sender: str, rcpts: list[str], content: bytes, session: Session,
                     received: float) -> str:
        """Queue a received message, deliver its local part now, and return its queue id."""
        qm = self.queue_manager
        qid = mailq.new_queue_id(qm.spool)
        self.log("smtpd", log_client(qid, session.client_ip), session.pid)
        rcpts = [self.canonical(r) for r in rcpts]
        proto = ("ESMTPS" if session.tls else "ESMTP") if session.proto == "ESMTP" else "SMTP"
        header = received_header(session.helo or "unknown", session.client_ip,
                                 self.config.hostname, qid, proto, rcpts,
                                 datetime.fromtimestamp(received).astimezone())
        message = header.encode() + content
        self.log("cleanup", log_message_id(qid, message_id_of(content)))
        await qm.enqueue(QueueEntry(qid, sender, rcpts, received, len(message),
                                    session.client_ip), message)
        await qm.deliver(qid, local_only=True)
        if not qm.busy(qid) and any(self.local_user(r) is None for r in rcpts):
            qm.spawn(qm.deliver(qid))
        return qid

    # ---- the queue, for callers ------------------------------------------------------

    async def flush(self) -> None:
        """Attempt every queued message now (``postqueue -f``) and wait for the result."""
        await self.queue_manager.flush()

    def queue(self) -> list[QueueEntry]:
        """The messages waiting in the queue, oldest first."""
        return self.queue_manager.entries()
