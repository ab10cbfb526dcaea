"""Which names each node's certificate carries, and the lab's TLS set-up at build.

A mail server's certificate names its ``hostname``; the firewall's SMTP proxy names its
own ``hostname`` and the ``tls_names`` it answers for (the mail host name DNS points at
in "Inbound To" mode). ``prepare_nodes`` runs at lab build, before the nodes' /etc
layers are mounted: the CA, each node's trust, each server's certificate, and the mail
users' /etc/passwd entries (mailboxes belong to them).
"""
from __future__ import annotations

from pathlib import Path

from lab.model.services import parse_service
from lab.model.topology import Node, Topology
from lab.protocols.mbox import passwd_lines
from lab.protocols.tlsca import LabCa, ServerTls, prepare_lab_tls

CA_DIR = "tls"  # under the lab's state directory, which no node can see


def server_names(node: Node) -> list[str]:
    names: list[str] = []
    if "smtp" in node.services:
        names.append(parse_service("smtp", node.services["smtp"]).hostname)
    if "firewall" in node.services:
        proxy = parse_service("firewall", node.services["firewall"]).proxy
        names += [proxy.hostname, *proxy.tls_names]  # the proxy may be switched on later
    return list(dict.fromkeys(names))


def node_tls(ca: LabCa | None, root: Path, names: list[str]) -> ServerTls | None:
    if ca is None or not names:
        return None
    tls = ServerTls.for_node(ca, root, names)
    tls.ensure()
    return tls


def _passwd(root: Path, users: list[str]) -> None:
    path = root / "etc/passwd"
    base = path.read_text() if path.exists() else Path("/etc/passwd").read_text()
    known = {line.split(":", 1)[0] for line in base.splitlines()}
    extra = [line for line in passwd_lines(users) if line.split(":", 1)[0] not in known]
    if extra:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(base.rstrip("\n") + "\n" + "\n".join(extra) + "\n")


def prepare_nodes(lab_dir: Path, lab: str, topo: Topology, roots: dict[str, Path]) -> LabCa:
    """The lab's CA and the nodes' TLS and mail-user files (see the module's doc)."""
    names = {}
    for name, node in topo.nodes.items():
        names[name] = server_names(node)
        if "smtp" in node.services:
            _passwd(roots[name], parse_service("smtp", node.services["smtp"]).users)
    return prepare_lab_tls(lab_dir / CA_DIR, lab, roots, names)
