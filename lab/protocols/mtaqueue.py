"""The MTA's queue manager: what Postfix's qmgr does, on the supervisor's loop.

A message is delivered as soon as it is queued; a deferred one waits
``minimal_backoff_time`` after its first failure, the wait doubling after each failure up
to ``maximal_backoff_time`` (Postfix's exponential backoff), and the deferred queue is
scanned every ``queue_run_delay`` while a message waits in it. Times come from the lab's
clock (lab/protocols/clock.py), so a history replay can run the queue through hours. ``postqueue -f`` / ``sendmail -q`` in the node (or
``flush()``) deliver everything now: they write to the node's
``/var/spool/postfix/public/qmgr`` FIFO, as Postfix's do. Starting the service (a restart)
also attempts every queued message once.
"""
from __future__ import annotations

import asyncio
import math
import os
import stat
from typing import TYPE_CHECKING, Any

from lab.asyncwait import wait_event
from lab.protocols import mailq
from lab.protocols.delivery import Outcome, deliver_local, deliver_remote
from lab.protocols.maillog import (
    log_bounce,
    log_delivery,
    log_expired,
    log_message_id,
    log_queued,
    log_removed,
)
from lab.protocols.mailq import QueueEntry
from lab.protocols.mbox import bounce_message, message_id_of

if TYPE_CHECKING:
    from lab.services.mta import MtaService

TRIGGER_FIFO = "/var/spool/postfix/public/qmgr"
PARALLEL = 10  # deliveries at once (Postfix's default_process_limit is higher; a lab is small)


def backoff(config: Any, attempts: int) -> float:
    """Seconds until the next attempt after ``attempts`` failed ones."""
    wait = config.minimal_backoff_time * 2 ** max(0, attempts - 1)
    return min(max(wait, config.minimal_backoff_time), config.maximal_backoff_time)


class QueueManager:
    def __init__(self, mta: MtaService) -> None:
        self.mta = mta
        self.spool = mailq.spool_path(mta.node.root)
        self._busy: set[str] = set()
        self._idle = asyncio.Event()  # set when no delivery attempt is running
        self._idle.set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._flush_all = False
        self._fifo: int | None = None

    @property
    def running(self) -> bool:
        return self._runner is not None and not self._runner.done()

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        for q in (*mailq.QUEUES, "public"):
            (self.spool / q).mkdir(parents=True, exist_ok=True)
        self._open_fifo()
        self._wake = asyncio.Event()
        self._flush_all = True  # a (re)start attempts every queued message once
        self._runner = asyncio.get_running_loop().create_task(self._run_forever())

    def _open_fifo(self) -> None:
        path = self.mta.node.path(TRIGGER_FIFO)
        if path.exists() and not stat.S_ISFIFO(path.lstat().st_mode):
            path.unlink()
        if not path.exists():
            os.mkfifo(path, 0o622)
            os.chmod(path, 0o622)
        # read-write, so the FIFO never reports end-of-file between writers
        self._fifo = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        asyncio.get_running_loop().add_reader(self._fifo, self._on_trigger)

    def _on_trigger(self) -> None:
        try:
            data = os.read(self._fifo, 512) if self._fifo is not None else b""
        except BlockingIOError:
            return
        if data:
            self.trigger()

    def trigger(self) -> None:
        """Deliver every queued message at the next pass (postqueue -f)."""
        self._flush_all = True
        self._wake.set()

    async def stop(self) -> None:
        if self._fifo is not None:
            asyncio.get_running_loop().remove_reader(self._fifo)
            os.close(self._fifo)
            self._fifo = None
        tasks = [t for t in [self._runner, *self._tasks] if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runner = None
        self._tasks.clear()
        self._busy.clear()

    # ---- the queue -------------------------------------------------------------------

    def entries(self) -> list[QueueEntry]:
        return mailq.list_entries(self.spool)

    async def flush(self) -> None:
        """Attempt every queued message now and wait for the result (an attempt already
        under way is waited for first, then the message is tried again)."""
        while self._busy:
            await self._idle.wait()
        await self._run_queue(due_only=False)
        while self._tasks or self._busy:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            if self._busy:
                await self._idle.wait()

    async def enqueue(self, entry: QueueEntry, message: bytes) -> None:
        mailq.write_entry(self.spool, entry, message)
        self.mta.log("qmgr", log_queued(entry.queue_id, entry.sender, entry.size,
                                        len(entry.recipients)))

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_forever(self) -> None:
        """Scan the queue every ``queue_run_delay`` while a message waits in it, as qmgr
        does; with nothing due before the next scan, sleep until the scan where something
        is (or until woken: a flush, a new deferral). An empty queue costs no wake-ups."""
        loop = asyncio.get_running_loop()
        last_scan = -math.inf
        while True:
            delay = self.mta.config.queue_run_delay
            flush, self._flush_all = self._flush_all, False
            now = loop.time()
            if flush or now - last_scan >= delay:
                last_scan = now
                try:
                    await self._run_queue(due_only=not flush)
                except Exception as e:  # noqa: BLE001 - keep the runner alive
                    self.mta.log("qmgr", f"warning: queue run failed: {e}")
            scan = self._next_scan(last_scan, delay)
            wait = None if scan is None else max(0.05, scan - loop.time())
            await wait_event(self._wake, wait)
            self._wake.clear()

    def _next_scan(self, last_scan: float, delay: float) -> float | None:
        """The loop time of the first scan (``last_scan`` + a multiple of ``delay``) at
        which a queued message is due; None when no message waits."""
        due = [e.next_attempt for e in self.entries() if e.queue_id not in self._busy]
        if not due:
            return None
        until = min(due) - self.mta.node.clock.time()
        return last_scan + delay * max(1, math.ceil(until / delay))

    async def _run_queue(self, due_only: bool) -> None:
        now = self.mta.node.clock.time()
        entries = [e for e in self.entries() if e.queue_id not in self._busy
                   and (not due_only or e.next_attempt <= now)]
        limit = asyncio.Semaphore(PARALLEL)

        async def one(qid: str) -> None:
            async with limit:
                await self.deliver(qid)

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

    async def deliver(self, qid: str, local_only: bool = False) -> None:
        """One delivery attempt for every pending recipient of message ``qid``."""
        if qid in self._busy:
            return
        self._busy.add(qid)
        self._idle.clear()
        try:
            await self._attempt(qid, local_only)
        except Exception as e:  # noqa: BLE001 - one bad message must not stop the queue
            self.mta.log("qmgr", f"warning: {qid}: delivery attempt failed: {e!r}")
            found = self._find(qid)
            if found is not None:  # do not retry it at once, in a tight loop
                entry, message = found
                entry.next_attempt = (self.mta.node.clock.time()
                                      + self.mta.config.minimal_backoff_time)
                try:
                    mailq.write_entry(self.spool, entry, message)
                except OSError:
                    pass
                self._wake.set()
        finally:
            self._busy.discard(qid)
            if not self._busy:
                self._idle.set()

    def busy(self, qid: str) -> bool:
        return qid in self._busy

    async def _attempt(self, qid: str, local_only: bool) -> None:
        found = self._find(qid)
        if found is None:
            return
        entry, message = found
        mta = self.mta
        started = mta.node.clock.time()
        local = [r for r in entry.recipients if mta.local_user(r) is not None]
        remote = [] if local_only else [r for r in entry.recipients if r not in local]
        outcomes: dict[str, Outcome] = {}
        for rcpt in local:
            outcomes[rcpt] = await deliver_local(mta, entry, message, rcpt)
            self._log_outcome(entry, rcpt, outcomes[rcpt], started, "local")
        by_domain: dict[str, list[str]] = {}
        for rcpt in remote:
            by_domain.setdefault(rcpt.rpartition("@")[2].lower(), []).append(rcpt)
        for domain, rcpts in by_domain.items():
            got = await deliver_remote(mta, entry, message, domain, rcpts)
            pid = mta.pids.new()
            tls = next((o.tls for o in got.values() if o.tls), "")
            if tls:
                mta.log("smtp", tls, pid)
            for rcpt, outcome in got.items():
                self._log_outcome(entry, rcpt, outcome, started, "smtp", pid)
            outcomes.update(got)
        self._settle(entry, message, outcomes)

    def _log_outcome(self, entry: QueueEntry, rcpt: str, o: Outcome, started: float,
                     program: str, pid: int | None = None) -> None:
        now = self.mta.node.clock.time()
        queued = max(0.0, started - entry.arrival)
        delays = (0.0, queued, o.setup, o.transfer)
        self.mta.log(program, log_delivery(entry.queue_id, rcpt, o.relay, now - entry.arrival,
                                           o.dsn, o.status, o.detail, delays), pid)

    def _settle(self, entry: QueueEntry, message: bytes, outcomes: dict[str, Outcome]) -> None:
        now = self.mta.node.clock.time()
        config = self.mta.config
        deferred = [r for r, o in outcomes.items() if o.status == "deferred"]
        failed = {r: (o.dsn, o.detail) for r, o in outcomes.items() if o.status == "bounced"}
        if deferred and now - entry.arrival >= config.bounce_after:
            self.mta.log("qmgr", log_expired(entry.queue_id, entry.sender))
            for r in deferred:
                failed[r] = (outcomes[r].dsn, outcomes[r].detail)
            deferred = []
        if failed:
            self._bounce(entry, message, failed)
        pending = [r for r in entry.recipients if r not in outcomes or r in deferred]
        if not pending:
            mailq.remove_entry(self.spool, entry.queue_id)
            self.mta.log("qmgr", log_removed(entry.queue_id))
            return
        entry.recipients = pending
        entry.reasons = {
            r: (outcomes[r].detail if r in outcomes else entry.reasons.get(r, ""))
            for r in pending if r in outcomes or r in entry.reasons
        }
        if deferred:
            entry.queue = "deferred"
            entry.attempts += 1
            entry.next_attempt = now + backoff(config, entry.attempts)
        mailq.write_entry(self.spool, entry, message)
        self._wake.set()  # the runner sleeps until the scan where this one is due

    def _bounce(self, entry: QueueEntry, message: bytes,
                failed: dict[str, tuple[str, str]]) -> None:
        mta = self.mta
        if not entry.sender:
            mta.log("bounce",
                    f"{entry.queue_id}: null sender, non-delivery notification discarded")
            return
        now = mta.node.clock.time()
        qid = mailq.new_queue_id(self.spool)
        dsn = bounce_message(mta.config.hostname, entry.queue_id, entry.sender,
                             entry.arrival, failed, message, now)
        mta.log("cleanup", log_message_id(qid, message_id_of(dsn)))
        mta.log("bounce", log_bounce(entry.queue_id, qid))
        self.spawn(self._enqueue_and_deliver(QueueEntry(qid, "", [entry.sender], now,
                                                        len(dsn)), dsn))

    async def _enqueue_and_deliver(self, entry: QueueEntry, message: bytes) -> None:
        await self.enqueue(entry, message)
        await self.deliver(entry.queue_id)
