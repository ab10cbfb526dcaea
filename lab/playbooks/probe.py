"""The built-in probes, run INSIDE a node (through the same exec path as a trainee's
commands): ``python -m lab.playbooks.probe KIND JSON-ARGS``. Each prints one JSON object.

    dns   {server, name, type, recurse}  status (NOERROR/NODATA/NXDOMAIN/SERVFAIL/timeout),
                                          aa, answers (the data of the answer records),
                                          count, ttl (of the first answer), ns and glue
                                          (a referral's NS names and glue addresses)
    tcp   {host, port}                    result: open, refused or timeout
    smtp  {host, port, helo, mail_from, rcpt_to, data}
                                          the reply code of each stage (banner, helo, mail,
                                          rcpt, data), the stage reached and the last reply
    ping  {host, count, interval}         sent, received, loss (percent)
    arp   {host, count}                   result: answered or silent; mac; interface
                                          (scapy: who-has on the link toward host; tells
                                          "no such neighbour" from "neighbour ignores IP")

Uses only sockets and dnslib, so the answers are what the node's own network and
resolver give (docs/design.md, rule 3).
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from typing import Any

TIMEOUT = 3.0


def _nameserver() -> str:
    try:
        with open("/etc/resolv.conf") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    return parts[1]
    except OSError:
        pass
    return "127.0.0.1"


def dns(name: str, type: str = "A", server: str | None = None, recurse: bool = True,
        timeout: float = TIMEOUT) -> dict[str, Any]:
    from dnslib import QTYPE, RCODE, DNSRecord

    server = server or _nameserver()
    q = DNSRecord.question(name, type.upper())
    q.header.rd = 1 if recurse else 0
    try:
        raw = q.send(server, 53, timeout=timeout)
    except TimeoutError:
        return {"status": "timeout", "rcode": -1, "aa": False, "answers": "", "count": 0,
                "ttl": -1}
    except OSError as e:
        return {"status": "unreachable", "rcode": -1, "aa": False, "answers": "", "count": 0,
                "ttl": -1, "error": str(e)}
    reply = DNSRecord.parse(raw)
    wanted = getattr(QTYPE, type.upper())
    rrs = [rr for rr in reply.rr if rr.rtype == wanted]
    status = RCODE.get(reply.header.rcode)
    if status == "NOERROR" and not rrs:
        status = "NODATA"
    ns = [str(rr.rdata).strip() for rr in reply.auth if rr.rtype == QTYPE.NS]
    glue = [str(rr.rdata).strip() for rr in reply.ar if rr.rtype == QTYPE.A]
    return {"status": status, "rcode": reply.header.rcode, "aa": bool(reply.header.aa),
            "answers": " ".join(str(rr.rdata).strip() for rr in rrs), "count": len(rrs),
            "ttl": rrs[0].ttl if rrs else -1, "ns": " ".join(ns), "glue": " ".join(glue)}


def tcp(host: str, port: int, timeout: float = TIMEOUT) -> dict[str, Any]:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return {"result": "open"}
    except ConnectionRefusedError:
        return {"result": "refused"}
    except TimeoutError:
        return {"result": "timeout"}
    except OSError as e:
        return {"result": "unreachable", "error": e.strerror or str(e)}


def _reply(f) -> tuple[int, str]:
    """One SMTP reply (possibly multi-line): its code and text."""
    text = []
    while True:
        line = f.readline()
        if not line:
            return -1, " ".join(text)
        line = line.decode(errors="replace").rstrip("\r\n")
        text.append(line)
        if len(line) < 4 or line[3] != "-":
            code = line[:3]
            return (int(code) if code.isdigit() else -1), " ".join(text)


def smtp(host: str, rcpt_to: str, port: int = 25, helo: str = "probe.example",
         mail_from: str = "probe@probe.example", data: bool = False,
         timeout: float = TIMEOUT) -> dict[str, Any]:
    out: dict[str, Any] = {"result": "", "stage": "connect"}
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        return {**out, "result": "refused"}
    except TimeoutError:
        return {**out, "result": "timeout"}
    except OSError as e:
        return {**out, "result": "unreachable", "reply": e.strerror or str(e)}
    dialog = [("banner", None), ("helo", f"HELO {helo}"), ("mail", f"MAIL FROM:<{mail_from}>"),
              ("rcpt", f"RCPT TO:<{rcpt_to}>")]
    if data:
        dialog += [("data", "DATA"), ("body", "Subject: probe\r\n\r\nprobe\r\n.")]
    try:
        with sock, sock.makefile("rb") as f:
            for stage, command in dialog:
                out["stage"] = stage
                if command is not None:
                    sock.sendall(command.encode() + b"\r\n")
                code, text = _reply(f)
                out[stage], out["last"], out["reply"] = code, code, text
                if code < 0 or code >= 400:
                    out["result"] = "rejected" if code >= 400 else "closed"
                    break
            else:
                out["result"] = "accepted"
            sock.sendall(b"QUIT\r\n")
    except TimeoutError:
        out["result"] = "stalled"
    except OSError as e:
        out["result"] = "closed"
        out["reply"] = e.strerror or str(e)
    return out


def ping(host: str, count: int = 3, interval: float = 0.05, timeout: float = 1.0
         ) -> dict[str, Any]:
    """``count`` echo requests ``interval`` s apart; each reply awaited ``timeout`` s."""
    wait = str(max(1, round(min(timeout, 3))))
    p = subprocess.run(["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", wait,
                        host], capture_output=True, text=True,
                       timeout=count * interval + 10, check=False)
    sent = received = 0
    for line in p.stdout.splitlines():
        if "packets transmitted" in line:
            fields = line.replace(",", " ").split()
            sent, received = int(fields[0]), int(fields[fields.index("received") - 1]) \
                if "received" in fields else 0
    loss = round(100 * (sent - received) / sent) if sent else 100
    return {"sent": sent, "received": received, "loss": loss}


def arp(host: str, count: int = 2, timeout: float = 1.0) -> dict[str, Any]:
    """ARP who-has ``host`` on the interface the node's routing table picks, crafted and
    read with scapy: a neighbour that answers ARP is on the link even when it ignores or
    filters IP (ping, TCP); silence means nothing with that address is there."""
    from scapy.all import ARP, Ether, conf, srp  # a slow import, only here

    conf.verb = 0
    iface, _src, gateway = conf.route.route(host)
    out: dict[str, Any] = {"result": "silent", "mac": "", "interface": str(iface)}
    if gateway not in ("0.0.0.0", host):
        out["result"] = "not on link"  # routed: ARP would ask for the gateway, not for host
        return out
    answered, _ = srp(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=host), iface=iface,
                      timeout=timeout, retry=count - 1)
    for _sent, reply in answered:
        out.update(result="answered", mac=reply[ARP].hwsrc)
    return out


PROBES = {"dns": dns, "tcp": tcp, "smtp": smtp, "ping": ping, "arp": arp}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in PROBES:
        print(f"usage: probe {{{','.join(PROBES)}}} JSON-ARGS", file=sys.stderr)
        return 2
    started = time.monotonic()
    result = PROBES[argv[0]](**json.loads(argv[1]))
    result["seconds"] = round(time.monotonic() - started, 3)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
