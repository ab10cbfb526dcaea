"""SMTP benchmark: sessions per second into the lab's mail server, directly and through
the firewall's SMTP proxy ("Inbound To"), against a minimal SMTP server measured in the
same run.

    sudo .venv/bin/python bench/smtp_bench.py [--runs N] [--sessions N] [--clients N]

Every server runs on one asyncio loop in this process on loopback addresses (127.0.0.25
mail server, 127.0.0.26 proxy, 127.0.0.27 baseline), as the lab's supervisor runs them.
``--clients`` concurrent clients each run whole sessions (EHLO, MAIL, RCPT, DATA with a
1 KB message, QUIT) until ``--sessions`` are done. The spool and mailboxes are on /run
(tmpfs), where a lab keeps its nodes' files. Prints the median sessions/s over
``--runs`` runs (default 5) for:

  * baseline: a minimal asyncio SMTP server (fixed replies, reads DATA to the dot,
    stores nothing): the cost of asyncio and the sockets alone;
  * mta: the lab's MTA (Postfix replies, anvil limit, queue file, mbox delivery, logs);
  * proxy: the same sessions sent to the proxy, which checks each RCPT with the MTA and
    relays the message (two SMTP sessions per message);
and each one's ratio to the baseline. The mail server's spool and logs live in a
temporary directory removed at exit.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.model.firewall import FirewallConfig
from lab.model.mta import MtaConfig
from lab.services.base import NodeContext
from lab.services.mta import MtaService
from lab.services.proxy import SmtpProxy

MTA_IP, PROXY_IP, BASE_IP = "127.0.0.25", "127.0.0.26", "127.0.0.27"
BODY = b"Subject: bench\r\n\r\n" + b"x" * 1000 + b"\r\n"


async def minimal_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 bench ESMTP\r\n")
    try:
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"DATA":
                writer.write(b"354 go\r\n")
                while (await reader.readline()) not in (b".\r\n", b""):
                    pass
                writer.write(b"250 ok\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
    finally:
        writer.close()


async def reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line or line[3:4] != b"-":
            return line


async def one_session(address: str) -> None:
    reader, writer = await asyncio.open_connection(address, 25)
    await reply(reader)
    for command in (b"EHLO bench.example.com", b"MAIL FROM:<b@example.com>",
                    b"RCPT TO:<jsmith@example.net>", b"DATA"):
        writer.write(command + b"\r\n")
        await writer.drain()
        answer = await reply(reader)
        if answer[:1] not in (b"2", b"3"):
            raise RuntimeError(f"{address}: {command!r} -> {answer!r}")
    writer.write(BODY + b".\r\nQUIT\r\n")
    await writer.drain()
    if not (await reply(reader)).startswith(b"250"):
        raise RuntimeError(f"{address}: message refused")
    await reply(reader)
    writer.close()


async def rate(address: str, sessions: int, clients: int) -> float:
    left = [sessions]

    async def client() -> None:
        while left[0] > 0:
            left[0] -= 1
            await one_session(address)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return sessions / (time.perf_counter() - started)


async def main(runs: int, sessions: int, clients: int) -> None:
    with tempfile.TemporaryDirectory(dir="/run" if Path("/run").is_dir() else None) as tmp:
        root = Path(tmp)
        mta = MtaService(NodeContext("mx", root / "mx", [MTA_IP]),
                         MtaConfig(hostname="mail.example.net", domains=["example.net"],
                                   users=["jsmith"], client_connection_limit=0))
        fw = FirewallConfig(external="inet", internal="lan",
                            proxy={"mode": "inbound-to", "servers": [MTA_IP],
                                   "domains": ["example.net"]})
        proxy = SmtpProxy(NodeContext("fw", root / "fw", [PROXY_IP]), fw, PROXY_IP)
        base = await asyncio.start_server(minimal_session, BASE_IP, 25)
        await mta.start()
        await proxy.start()
        try:
            results: dict[str, list[float]] = {"baseline": [], "mta": [], "proxy": []}
            for _ in range(runs):
                for name, address in (("baseline", BASE_IP), ("mta", MTA_IP),
                                      ("proxy", PROXY_IP)):
                    results[name].append(await rate(address, sessions, clients))
                (root / "mx/var/mail/jsmith").unlink(missing_ok=True)
        finally:
            await proxy.stop()
            await mta.stop()
            base.close()
            await base.wait_closed()
    baseline = statistics.median(results["baseline"])
    print(f"SMTP sessions/s, median of {runs} runs, {sessions} sessions, {clients} clients")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"  {name:<9} {median:8.1f}/s  ratio to baseline {median / baseline:5.2f}  "
              f"(runs: {', '.join(f'{v:.0f}' for v in values)})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--clients", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.sessions, args.clients))
