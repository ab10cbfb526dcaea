"""SMTP benchmark: sessions per second into the lab's mail server, directly and through
the firewall's SMTP proxy ("Inbound To"), against a minimal SMTP server measured in the
same run, for this tree and optionally for other revisions of the code.

    .venv/bin/python bench/smtp_bench.py [--runs N] [--sessions N] [--clients N]
                                         [--against REV]...

Each tree's mail server and proxy run together in a child process, on one asyncio loop as
a lab's supervisor runs them (``--serve``); the baseline, a minimal asyncio SMTP server
(fixed replies, reads DATA to the dot, stores nothing), runs in a child of its own; this
process is the load: ``--clients`` concurrent clients each run whole sessions (EHLO, MAIL,
RCPT, DATA with a 1 KB message, QUIT) until ``--sessions`` are done. ``--against REV``
(a git revision, e.g. the last one with the aiosmtpd implementation) exports that
revision's ``lab/`` package with ``git archive`` and serves it the same way: its
dependencies must be importable by this Python. Servers listen on 127.77.x.y:25.

The mail servers' spool and mailboxes go to a temporary directory under the lab state
root's parent (``/run`` unless ``LAB_STATE_ROOT`` says otherwise), where a lab keeps its
nodes' files; the script prints which file system that is, since an fsync costs nothing
on tmpfs and a disk flush elsewhere. Prints, per server, the median sessions/s over
``--runs`` runs (interleaved, so every server sees the same machine load) and its ratio
to the baseline.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BASE_IP = "127.77.0.1"
BODY = b"Subject: bench\r\n\r\n" + (b"x" * 98 + b"\r\n") * 10  # 1 KB, short lines


# ---- the servers (child processes) ---------------------------------------------------

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


async def _until_stdin_closes() -> None:
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def serve_baseline() -> None:
    server = await asyncio.start_server(minimal_session, BASE_IP, 25)
    async with server:
        await _until_stdin_closes()


async def serve_lab(spool: Path, mta_ip: str, proxy_ip: str) -> None:
    """The MTA and the proxy of whichever ``lab`` package is first on sys.path."""
    from lab.model.firewall import FirewallConfig
    from lab.model.mta import MtaConfig
    from lab.services.base import NodeContext
    from lab.services.mta import MtaService
    from lab.services.proxy import SmtpProxy

    config = {"hostname": "mail.example.net", "domains": ["example.net"], "users": ["jsmith"]}
    if "client_connection_limit" in MtaConfig.model_fields:
        config["client_connection_limit"] = 0
    mta = MtaService(NodeContext("mx", spool / "mx", [mta_ip]), MtaConfig(**config))
    fw = FirewallConfig(external="inet", internal="lan",
                        proxy={"mode": "inbound-to", "servers": [mta_ip],
                               "domains": ["example.net"]})
    proxy = SmtpProxy(NodeContext("fw", spool / "fw", [proxy_ip]), fw, proxy_ip)
    await mta.start()
    await proxy.start()
    try:
        await _until_stdin_closes()
    finally:
        await proxy.stop()
        await mta.stop()


# ---- the load (this process) ---------------------------------------------------------

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
    answer = await reply(reader)
    if not answer.startswith(b"250"):
        raise RuntimeError(f"{address}: message refused: {answer!r}")
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


def export_tree(rev: str, into: Path) -> Path:
    """``lab/`` of git revision ``rev`` under ``into``; the directory to put on sys.path."""
    archive = subprocess.run(["git", "-C", str(PROJECT_ROOT), "archive", rev, "lab"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def start(args: list[str], path: Path | None) -> subprocess.Popen:
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = str(path)
    child = subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
    if child.stdout.readline().strip() != "ready":
        child.kill()
        raise RuntimeError(f"server {' '.join(args)} did not start (see its error above)")
    return child


def filesystem(path: Path) -> str:
    p = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", str(path)],
                       capture_output=True, text=True, check=False)
    return p.stdout.strip() or "unknown"


def main(runs: int, sessions: int, clients: int, against: list[str]) -> None:
    state_parent = Path(os.environ.get("LAB_STATE_ROOT", "/run/lab")).parent
    with tempfile.TemporaryDirectory(prefix="smtp-bench-", dir=state_parent) as tmp:
        root = Path(tmp)
        trees = {"this tree": PROJECT_ROOT}
        for i, rev in enumerate(against):
            trees[rev] = export_tree(rev, Path(tempfile.mkdtemp(prefix=f"rev{i}-", dir=root)))
        targets = {"baseline": BASE_IP}
        children = [start(["--serve-baseline"], None)]
        try:
            for i, (label, path) in enumerate(trees.items()):
                mta_ip, proxy_ip = f"127.77.{i + 1}.25", f"127.77.{i + 1}.26"
                children.append(start(["--serve", str(root / f"spool{i}"), mta_ip, proxy_ip],
                                      path))
                targets[f"{label}: mta"] = mta_ip
                targets[f"{label}: proxy"] = proxy_ip
            results = {name: [] for name in targets}
            for _ in range(runs):
                for name, address in targets.items():
                    results[name].append(asyncio.run(rate(address, sessions, clients)))
        finally:
            for child in children:
                child.stdin.close()
                child.wait(10)
        print(f"SMTP sessions/s, median of {runs} runs, {sessions} sessions, {clients} clients;"
              f" spool on {filesystem(root)} ({root.parent})")
        baseline = statistics.median(results["baseline"])
        for name, values in results.items():
            median = statistics.median(values)
            print(f"  {name:<24} {median:8.1f}/s  ratio to baseline {median / baseline:5.3f}  "
                  f"(runs: {', '.join(f'{v:.0f}' for v in values)})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--against", action="append", default=[], metavar="REV",
                        help="also serve the lab/ package of this git revision")
    parser.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve", nargs=3, metavar=("SPOOL", "MTA_IP", "PROXY_IP"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        asyncio.run(serve_baseline())
    elif args.serve:
        if "PYTHONPATH" not in os.environ:
            sys.path.insert(0, str(PROJECT_ROOT))
        spool, mta_ip, proxy_ip = args.serve
        asyncio.run(serve_lab(Path(spool), mta_ip, proxy_ip))
    else:
        main(args.runs, args.sessions, args.clients, args.against)
