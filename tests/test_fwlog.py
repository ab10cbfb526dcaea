"""NFLOG parsing and the connection-log lines (captured kernel bytes), and `netguard -An`."""
from __future__ import annotations

import struct
import subprocess
import sys

import pytest

from lab.nodecmds.netguard import NO_LOG
from lab.nodecmds.netguard import main as netguard_main
from lab.protocols import fwlog
from lab.protocols.fwlog import ConnLog, StaticEntry
from lab.protocols.node import NodeContext

# Two NFLOG datagrams captured from the kernel (6.18) in a test namespace with the base
# ruleset loaded: a SYN from 203.0.113.20 to 203.0.113.25:25 permitted by smtp-in after
# the static DNAT to 10.1.0.25, and a SYN to port 26 hitting the default deny.
PERMIT = bytes.fromhex(
    "cc0000000004000000000000000000000200000108000100080002000e000a005020736d74702d696e0000"
    "0008000400000000020800050000000003080002004e4700011000080000060000b6c70d402c2c00000600"
    "0f000001000006001100000e0000120010002aa21aa3d17cb6c70d402c2c0800000014000300000000006b"
    "07115700000000000847fb400009004500003c583f40003f069d4ecb0071140a010019e386001970fa4075"
    "00000000a002a564465d0000020405b40402080a7e783ffa0000000001030309"
)
DENY = bytes.fromhex(
    "c400000000040000000000000000000002000001080001000800020006000a004400000008000400000000"
    "020800050000000003080002004e4700011000080000060000b6c70d402c2c000006000f00000100000600"
    "1100000e0000120010002aa21aa3d17cb6c70d402c2c0800000014000300000000006b0711570000000000"
    "099699400009004500003cf25440003f060339cb0071140a010019caf0001a268dd89d00000000a002a564"
    "465d0000020405b40402080aeed3d2240000000001030309"
)
STATIC = [StaticEntry("203.0.113.25", "10.1.0.25")]
WHEN = "2026-11-25T16:50:01"


def _packet(datagram: bytes) -> fwlog.NflogPacket:
    (msg_type, _seq, payload), = fwlog.split_messages(datagram)
    assert msg_type == 0x0400
    return fwlog.parse_packet_message(payload)


def test_parse_captured_permit() -> None:
    pkt = _packet(PERMIT)
    assert pkt.prefix == "P smtp-in"
    assert pkt.mark == 0x4E470001
    assert pkt.hook == 2  # forward
    flow = fwlog.parse_ipv4(pkt.payload)
    assert flow == fwlog.Flow("tcp", "203.0.113.20", "10.1.0.25", sport=58246, dport=25)
    assert fwlog.line_for_packet(pkt, STATIC, WHEN) == (
        "2026-11-25T16:50:01 P tcp 203.0.113.20:58246 203.0.113.25:25 rule=smtp-in "
        "nat=10.1.0.25:25")


def test_parse_captured_deny() -> None:
    pkt = _packet(DENY)
    assert pkt.prefix == "D"
    assert fwlog.line_for_packet(pkt, STATIC, WHEN) == (
        "2026-11-25T16:50:01 D tcp 203.0.113.20:51952 203.0.113.25:26 rule=default "
        "nat=10.1.0.25:26")
    # without the static-NAT table the reader shows the packet's own destination
    assert fwlog.line_for_packet(pkt, [], WHEN).split()[4] == "10.1.0.25:26"


def test_icmp_and_foreign_prefixes() -> None:
    icmp = bytes.fromhex("450000540000400040010000cb007114cb00711908003a4b12340001")
    flow = fwlog.parse_ipv4(icmp)
    assert flow == fwlog.Flow("icmp", "203.0.113.20", "203.0.113.25", icmp_type=8,
                              icmp_id=0x1234)
    pkt = fwlog.NflogPacket("P icmp", 0, 2, None, None, icmp)
    assert fwlog.line_for_packet(pkt, STATIC, WHEN) == (
        "2026-11-25T16:50:01 P icmp 203.0.113.20 203.0.113.25 type=8 rule=icmp")
    foreign = fwlog.NflogPacket("something else", 0, 2, None, None, icmp)
    assert fwlog.line_for_packet(foreign, STATIC, WHEN) is None
    assert fwlog.parse_ipv4(b"\x60" + bytes(39)) is None  # IPv6 is not logged


def test_bind_messages_layout() -> None:
    pf_bind, bind, mode = fwlog.bind_messages(7)
    # nlmsghdr: len, type (NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_CONFIG), flags REQUEST|ACK
    assert struct.unpack_from("=IHH", bind) == (len(bind), 0x0401, 0x0005)
    # nfgenmsg: AF_UNSPEC, version 0, res_id = group (big endian); attr CMD = BIND
    assert bind[16:20] == bytes([0, 0, 0, 7])
    assert bind[20:] == bytes([5, 0, 1, 0, 1, 0, 0, 0])
    assert pf_bind[16] == 2 and pf_bind[24] == 3  # AF_INET, PF_BIND
    attrs = fwlog.parse_attrs(mode[20:])
    assert attrs[fwlog.NFULA_CFG_MODE] == struct.pack(">IBB", 128, 2, 0)  # copy packet
    assert attrs[fwlog.NFULA_CFG_QTHRESH] == struct.pack(">I", 1)


def test_conn_log_writes_one_line_per_connection(tmp_path) -> None:
    node = NodeContext("fw", tmp_path)
    reader = ConnLog(node, group=1, static_nat=STATIC)
    assert reader.handle_datagram(PERMIT, now=1000.0)
    assert reader.handle_datagram(DENY, now=1000.5)
    # the retransmitted SYN of the denied attempt is not a new line
    assert reader.handle_datagram(DENY, now=1003.0) == []
    assert reader.handle_datagram(DENY, now=1000.0 + fwlog.DEDUP_SECONDS + 1)
    lines = node.path("/var/log/netguard/conn.log").read_text().splitlines()
    assert [ln.split()[1] for ln in lines] == ["P", "D", "D"]
    assert not reader.running


def test_log_proxy_lines(tmp_path) -> None:
    node = NodeContext("fw", tmp_path)
    line = fwlog.log_proxy(node, "Xr", ("203.0.113.20", 40112), ("203.0.113.1", 25),
                           "inbound-to", relay=("10.1.0.25", 25))
    assert line.split()[1:] == ["Xr", "tcp", "203.0.113.20:40112", "203.0.113.1:25",
                                "proxy=inbound-to", "relay=10.1.0.25:25"]
    assert node.path("/var/log/netguard/conn.log").read_text() == line + "\n"
    with pytest.raises(ValueError, match="unknown verdict"):
        fwlog.format_line(WHEN, "A", "tcp", "a", 1, "b", 2)


def test_netguard_prints_the_log(tmp_path, capsys) -> None:
    node = NodeContext("fw", tmp_path)
    reader = ConnLog(node, group=1, static_nat=STATIC)
    reader.handle_datagram(PERMIT, now=1000.0)
    reader.handle_datagram(DENY, now=1000.0)
    fwlog.log_proxy(node, "X", ("203.0.113.20", 1), ("203.0.113.25", 25), "inbound-through",
                    relay=("10.1.0.25", 25))
    assert netguard_main(["-An", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln.split()[1] for ln in out] == ["P", "D", "X"]
    assert out[0].split()[2:5] == ["tcp", "203.0.113.20:58246", "203.0.113.25:25"]
    assert netguard_main(["-An", "-s", "10.1.0.25", "--root", str(tmp_path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert netguard_main(["-An", "-s", "203.0.113.99", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out == ""


def test_netguard_without_log(tmp_path) -> None:
    p = subprocess.run([sys.executable, "-m", "lab.nodecmds.netguard", "-An", "--root",
                        str(tmp_path)], capture_output=True, text=True, timeout=30, check=False)
    assert p.returncode == 1
    assert p.stderr.strip() == NO_LOG == "netguard: no connection log (is this the firewall?)"


def test_error_log_line(tmp_path) -> None:
    from lab.protocols.fwlog import ERROR_LOG, log_error
    from lab.services.base import NodeContext

    node = NodeContext("fw", tmp_path)
    line = log_error(node, "smtp-proxy", "relay to 10.1.0.25:25 failed: Connection refused")
    assert line.split(" ", 1)[1] == "smtp-proxy: relay to 10.1.0.25:25 failed: Connection refused"
    assert node.path(ERROR_LOG).read_text() == line + "\n"


BEHIND = fwlog.SourceNat((fwlog.ipaddress.IPv4Network("192.168.10.0/24"),
                          fwlog.ipaddress.IPv4Network("172.16.25.0/24")), "198.51.100.1")
RELAY = [StaticEntry("198.51.100.25", "172.16.25.25")]


@pytest.mark.parametrize(("snat", "src", "dst", "shown"), [
    (BEHIND, "172.16.25.25", "198.51.100.9", "198.51.100.25"),  # the relay's static NAT
    (BEHIND, "172.16.25.25", "192.168.10.25", None),  # DMZ to LAN: nothing is translated
    (BEHIND, "192.168.10.53", "198.51.100.9", "198.51.100.1"),  # dynamic NAT
    (BEHIND, "192.168.10.53", "172.16.25.25", None),
    (fwlog.SourceNat(BEHIND.networks), "192.168.10.53", "198.51.100.9", None),  # no masquerade
    (fwlog.SourceNat(BEHIND.networks), "172.16.25.25", "198.51.100.9", "198.51.100.25"),
])
def test_the_source_address_a_connection_leaves_with(snat, src, dst, shown) -> None:
    assert snat.address_for(src, dst, RELAY) == shown
