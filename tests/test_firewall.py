"""FirewallService in throwaway namespaces: nft accepts the rulesets, NAT and permit/deny
really happen in the kernel, and the NFLOG reader writes P / D lines."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from netns_helpers import (
    GOLDEN_CASES,
    connect,
    fw_node,
    fw_topology,
    listener,
    make_firewall,
    ns_run,
    read_conn_log,
    require_root,
    socket_factory,
)

from lab.errors import LabError
from lab.nodecmds.netguard import main as netguard_main

GOLDEN = Path(__file__).parent / "golden" / "nft"
pytestmark = pytest.mark.root


@pytest.fixture
def lab():
    require_root()
    with fw_topology() as topology:
        yield topology
    for name in topology.values():
        assert not os.path.exists(f"/run/netns/{name}")


def test_nft_accepts_every_golden_ruleset(lab) -> None:
    run = ns_run(lab["fw"])
    for case in sorted(GOLDEN_CASES):
        text = (GOLDEN / f"{case}.nft").read_text()
        rc, _out, err = run(["nft", "-c", "-f", "-"], text)
        assert rc == 0, f"{case}: {err}"
        # loading twice works too: the delete+recreate header is idempotent
        for _ in range(2):
            rc, _out, err = run(["nft", "-f", "-"], text)
            assert rc == 0, f"{case}: {err}"


class Recorder:
    """A TCP server that greets with 220 and records its peers."""

    def __init__(self) -> None:
        self.peers: list[tuple[str, int]] = []

    async def __call__(self, reader, writer) -> None:
        self.peers.append(writer.get_extra_info("peername")[:2])
        writer.write(b"220 test\r\n")
        await writer.drain()
        writer.close()


async def _greeting(factory, addr, timeout=3.0, source=None) -> bytes:
    reader, writer = await connect(factory, addr, timeout, source)
    try:
        return await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()


async def _times_out(factory, addr, timeout=1.5) -> bool:
    try:
        _r, w = await connect(factory, addr, timeout)
    except TimeoutError:
        return True
    w.close()
    return False


async def _wait_for_lines(node, count: int) -> list[str]:
    for _ in range(50):
        lines = read_conn_log(node)
        if len(lines) >= count:
            return lines
        await asyncio.sleep(0.05)
    return read_conn_log(node)


def test_static_nat_permit_and_deny_are_logged(lab, tmp_path, capsys) -> None:
    node = fw_node(lab, tmp_path)
    inet, lan = socket_factory(lab["inet"]), socket_factory(lab["lan"])

    async def main() -> None:
        fw = make_firewall(lab, node)
        await fw.start()
        try:
            assert await fw.healthy()
            mx = Recorder()
            server = await asyncio.start_server(mx, sock=listener(lan, ("0.0.0.0", 25)))
            server2 = await asyncio.start_server(mx, sock=listener(lan, ("0.0.0.0", 26)))
            assert await _greeting(inet, ("203.0.113.25", 25)) == b"220 test\r\n"
            assert mx.peers[0][0] == "203.0.113.20"  # static NAT: the source is untouched
            assert await _times_out(inet, ("203.0.113.25", 26))  # no permit rule: dropped
            assert len(mx.peers) == 1
            lines = await _wait_for_lines(node, 2)
            server.close()
            server2.close()
        finally:
            await fw.stop()
        assert not await fw.healthy()
        rc, _o, _e = ns_run(lab["fw"])(["nft", "list", "table", "inet", "netguard"], None)
        assert rc != 0  # stop removed the tables

        assert len(lines) == 2, lines
        permit, deny = (ln.split() for ln in lines)
        assert permit[1:5] == ["P", "tcp", f"203.0.113.20:{mx.peers[0][1]}", "203.0.113.25:25"]
        assert "rule=smtp-in" in permit and "nat=10.1.0.25:25" in permit
        assert deny[1] == "D" and deny[4] == "203.0.113.25:26" and "rule=default" in deny

    asyncio.run(main())
    assert netguard_main(["-An", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln.split()[1] for ln in out] == ["P", "D"]


def test_dynamic_and_static_nat_outbound(lab, tmp_path) -> None:
    node = fw_node(lab, tmp_path)
    inet, lan = socket_factory(lab["inet"]), socket_factory(lab["lan"])

    async def main() -> None:
        fw = make_firewall(lab, node)
        await fw.start()
        try:
            ext = Recorder()
            s1 = await asyncio.start_server(ext, sock=listener(inet, ("203.0.113.20", 25)))
            s2 = await asyncio.start_server(ext, sock=listener(inet, ("203.0.113.20", 8080)))
            # admin-out from 10.1.0.100: masqueraded to the firewall's external address
            await _greeting(lan, ("203.0.113.20", 8080), source="10.1.0.100")
            # smtp-out from the mail server: static SNAT to its public address
            await _greeting(lan, ("203.0.113.20", 25), source="10.1.0.25")
            # the mail server has no rule for port 8080
            assert await _times_out(lan, ("203.0.113.20", 8080), timeout=1.0)
            lines = await _wait_for_lines(node, 3)
            s1.close()
            s2.close()
        finally:
            await fw.stop()
        assert [p[0] for p in ext.peers] == ["203.0.113.1", "203.0.113.25"]
        assert [ln.split()[1] for ln in lines] == ["P", "P", "D"]
        assert "rule=admin-out" in lines[0] and "rule=smtp-out" in lines[1]

    asyncio.run(main())


def test_missing_fw_rule_blocks_the_firewalls_own_mail(lab, tmp_path) -> None:
    node = fw_node(lab, tmp_path)
    fwsock, lan = socket_factory(lab["fw"]), socket_factory(lab["lan"])

    async def main() -> None:
        fw = make_firewall(lab, node)
        await fw.start()
        try:
            mx = Recorder()
            server = await asyncio.start_server(mx, sock=listener(lan, ("10.1.0.25", 25)))
            assert await _greeting(fwsock, ("10.1.0.25", 25)) == b"220 test\r\n"
            rules = [r for r in fw.config.model_dump(by_alias=True)["rules"]
                     if r["name"] != "fw-to-mx"]
            fw.load(fw.config.model_copy(update={"rules": fw.config.rules[:5]
                                                 + fw.config.rules[6:]}))
            assert [r.name for r in fw.config.rules] == [r["name"] for r in rules]
            assert await _times_out(fwsock, ("10.1.0.25", 25), timeout=1.0)
            lines = await _wait_for_lines(node, 2)
            server.close()
        finally:
            await fw.stop()
        assert len(mx.peers) == 1
        assert lines[0].split()[1] == "P" and "rule=fw-to-mx" in lines[0]
        denied = lines[1].split()
        assert denied[1] == "D" and denied[3].startswith("10.1.0.1:")
        assert denied[4] == "10.1.0.25:25"

    asyncio.run(main())


def test_rejected_ruleset_leaves_old_rules(lab, tmp_path) -> None:
    node = fw_node(lab, tmp_path)
    fw = make_firewall(lab, node)
    fw.load()
    real_run = fw.run
    sent = []

    def corrupting_run(argv, stdin):
        # what nft sees when the rendered text is broken: the check must stop the load
        if stdin is not None:
            stdin = stdin.replace("policy drop;", "policy dorp;", 1)
        sent.append(argv)
        return real_run(argv, stdin)

    fw.run = corrupting_run
    changed = fw.config.model_copy(update={"rules": fw.config.rules[:1]})
    with pytest.raises(LabError, match="nftables rejected the ruleset"):
        fw.load(changed)
    assert sent == [["nft", "-c", "-f", "-"]]  # never loaded
    rc, out, _e = real_run(["nft", "list", "table", "inet", "netguard"], None)
    assert rc == 0 and "fw-to-mx" in out
    assert len(fw.config.rules) == 7


def test_ping_through_static_nat_is_logged_once(lab, tmp_path) -> None:
    node = fw_node(lab, tmp_path)

    async def main() -> list[str]:
        fw = make_firewall(lab, node)
        await fw.start()
        try:
            proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", lab["inet"], "ping", "-c", "3", "-i", "0.2", "-W", "1",
                "203.0.113.25", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, _err = await asyncio.wait_for(proc.communicate(), 10)
            assert proc.returncode == 0, out
            return await _wait_for_lines(node, 1)
        finally:
            await fw.stop()

    lines = asyncio.run(main())
    # one line for the ping run: later echo requests belong to the same ICMP connection
    assert len(lines) == 1, lines
    assert lines[0].split()[1:5] == ["P", "icmp", "203.0.113.20", "203.0.113.25"]
    assert "rule=icmp" in lines[0] and "nat=10.1.0.25" in lines[0]
