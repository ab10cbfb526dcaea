"""Each node's private files on the host, and the mounts that show them inside the node.

The node sees ``<root>/etc`` layered over the host's /etc (overlayfs: its own
resolv.conf, hosts and service configs on top of the ordinary system files) and its own
empty /var/mail, /var/spool and /var/log. The lab state directory is hidden under an
empty tmpfs so nothing in a node can read the lab's records.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from lab.engine.nodebin import MOUNT_POINT
from lab.model.topology import Node

PRIVATE_DIRS = ("/var/mail", "/var/spool", "/var/log")


@dataclass
class NodeFiles:
    name: str
    root: Path

    def path(self, node_path: str) -> Path:
        return self.root / node_path.lstrip("/")

    def create(self, node: Node) -> None:
        """Write the node's own resolv.conf, hosts and hostname; make its private dirs."""
        for d in ("etc", ".etc-work") + PRIVATE_DIRS:
            self.path(d).mkdir(parents=True, exist_ok=True)
        self.path("/var/spool/mail").symlink_to("../mail")
        self.path("/etc/resolv.conf").write_text(resolv_conf(node))
        self.path("/etc/hosts").write_text(hosts_file(self.name, node))
        self.path("/etc/hostname").write_text(self.name + "\n")

    def mount_commands(self, hide: list[Path], node_bin: Path) -> list[str]:
        def q(path: Path | str) -> str:
            return shlex.quote(str(path))

        upper, work = q(self.path("/etc")), q(self.path("/.etc-work"))
        cmds = [f"mount -t overlay lab-etc -o lowerdir=/etc,upperdir={upper},workdir={work} /etc"]
        cmds += [f"mount --bind {q(self.path(d))} {d}" for d in PRIVATE_DIRS]
        cmds.append(f"mount --bind -o ro {q(node_bin)} {MOUNT_POINT}")
        for path in hide:
            cmds.append(f"mkdir -p {q(path)} && "
                        f"mount -t tmpfs -o mode=0700,size=64k lab-hidden {q(path)}")
        return cmds


def resolv_conf(node: Node) -> str:
    lines = []
    if node.search:
        lines.append("search " + " ".join(node.search))
    lines += [f"nameserver {ns}" for ns in node.nameservers]
    return "\n".join(lines) + "\n"


def hosts_file(name: str, node: Node) -> str:
    lines = ["127.0.0.1\tlocalhost", f"{node.interfaces[0].address.ip}\t{name}"]
    lines += [f"{addr}\t{host}" for host, addr in node.hosts.items()]
    return "\n".join(lines) + "\n"
