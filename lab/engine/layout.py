"""Each node's private files on the host, and the /etc layers mounted for the node.

The node sees ``<root>/etc`` layered over the host's /etc (overlayfs: its own
resolv.conf, hosts and service configs on top of the ordinary system files), mounted in
the node's Mininet mount namespace; the sealed root (lab.engine.seal) takes it from there
and adds the node's own empty /var/mail, /var/spool and /var/log (``private()``) and the
trainee channel's directory (``socket_dir``). What an ordinary user of the machine may
not read in the host's /etc (shadow, private keys...) is hidden by a layer between the
two (a file whited out, a directory replaced by an empty one of the node's own): root
in a node can read any file it sees. That layer is the same for every node of every lab
of a state root (``hidden_layer``: made once for the host's /etc as it is, about 170
files and directories fewer to make and delete per lab).
"""
from __future__ import annotations

import hashlib
import os
import secrets
import shlex
import shutil
import stat
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import LabError

if TYPE_CHECKING:
    from lab.model.topology import Node

PRIVATE_DIRS = ("/var/mail", "/var/spool", "/var/log")
HIDDEN_LAYERS = "_etc-hidden"  # under the state root; never a lab name
# hidden directories the lab puts a node's own files in (a server's TLS key): made in the
# node's layer too, with the host's owner and mode
WRITTEN = ("ssl/private",)


@dataclass
class NodeFiles:
    name: str
    root: Path
    hidden: Path | None = None  # the layer hiding the host's secrets (``hidden_layer``)

    def path(self, node_path: str) -> Path:
        return self.root / node_path.lstrip("/")

    @property
    def socket_dir(self) -> Path:
        """Holds the node's end of the trainee channel (mounted read-only in the node)."""
        return self.root / "lab-node"

    def create(self, node: Node) -> None:
        """Write the node's own resolv.conf, hosts and hostname; make its private dirs and
        the hidden directories the lab writes in (``WRITTEN``)."""
        for d in ("etc", ".etc-work") + PRIVATE_DIRS:
            self.path(d).mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(mode=0o755)
        self.path("/var/spool/mail").symlink_to("../mail")
        self.path("/etc/resolv.conf").write_text(resolv_conf(node))
        self.path("/etc/hosts").write_text(hosts_file(self.name, node))
        self.path("/etc/hostname").write_text(self.name + "\n")
        for entry in WRITTEN:
            if entry in unreadable_etc():
                _make_parents(self.path("/etc") / entry, Path("/etc") / entry)

    def private(self) -> dict[str, Path]:
        """The node's private directories: as the node sees them -> on the host."""
        return {d: self.path(d) for d in PRIVATE_DIRS}

    def mount_commands(self) -> list[str]:
        """Mount the node's /etc layers (in the node's Mininet mount namespace): its own
        over the hidden layer over the host's."""
        if self.hidden is None:
            raise LabError(f"node {self.name}: no layer hides the host's secrets")
        lower = shlex.quote(f"{self.hidden}:/etc")
        upper = shlex.quote(str(self.path("/etc")))
        work = shlex.quote(str(self.path("/.etc-work")))
        return [(f"mount -t overlay lab-etc -o lowerdir={lower},upperdir={upper},"
                 f"workdir={work} /etc")]


def hidden_layer(state_root: Path) -> Path:
    """The layer that hides the host's unreadable /etc entries (``unreadable_etc``) from
    every node of the state root's labs, made if missing: one per set of such entries
    with their directories' owners and modes (a digest names it), so a change of the
    host's /etc gets a layer of its own. Made aside and renamed into place: labs starting
    at once find it whole. Only the lab's state root holds it; no node sees it. It must
    not be deleted while a lab of the state root runs: its nodes would see the host's
    secrets again (`lab clean` leaves names starting with "_" alone: they are no labs)."""
    entries = unreadable_etc()
    stats = []
    for e in entries:
        for p in (Path(e), *(p for p in Path(e).parents if str(p) != ".")):
            try:
                stats.append((str(p), *_owner_mode(Path("/etc") / p)))
            except FileNotFoundError:  # gone since (a lock file useradd held): no matter
                continue
    digest = hashlib.sha256(repr(sorted(set(stats))).encode()).hexdigest()[:16]
    layer = state_root / HIDDEN_LAYERS / digest
    if layer.is_dir():
        return layer
    layer.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    new = layer.parent / f".new-{os.getpid()}-{secrets.token_hex(4)}"
    new.mkdir(mode=0o755)
    try:
        for entry in entries:
            try:
                _hide(new / entry, Path("/etc") / entry)
            except FileNotFoundError:  # gone since it was listed: nothing to hide
                continue
        os.rename(new, layer)
    except OSError:
        if not layer.is_dir():
            raise
    finally:
        shutil.rmtree(new, ignore_errors=True)  # another lab's rename won: ours goes
    return layer


def _owner_mode(path: Path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid, st.st_mode


def _hide(upper: Path, lower: Path) -> None:
    """Hide the host's ``lower`` from the layer: a file is whited out; a directory becomes
    an empty opaque one (same owner and mode), so that none of the host's entries show
    through and the node's own layer can still put files there (a server's key in
    /etc/ssl/private)."""
    _make_parents(upper.parent, lower.parent)
    if lower.is_dir() and not lower.is_symlink():
        _make_dir(upper, lower)
        os.setxattr(upper, "trusted.overlay.opaque", b"y")
    else:
        os.mknod(upper, 0o600 | stat.S_IFCHR, os.makedev(0, 0))  # overlayfs whiteout


def _make_dir(upper: Path, lower: Path) -> None:
    st = os.stat(lower)
    upper.mkdir()
    os.chown(upper, st.st_uid, st.st_gid)
    upper.chmod(stat.S_IMODE(st.st_mode))


def _make_parents(upper: Path, lower: Path) -> None:
    """Directory ``upper`` of the layer (and its parents) made with the owner and mode
    of the host's ``lower``."""
    if upper.is_dir():
        return
    _make_parents(upper.parent, lower.parent)
    _make_dir(upper, lower)


@cache
def unreadable_etc() -> tuple[str, ...]:
    """Entries of the host's /etc that an ordinary user cannot read (files without the
    "other" read bit, directories without read and search), relative to /etc."""
    found = []
    for top, dirs, files in os.walk("/etc"):
        for name in list(dirs) + files:
            path = os.path.join(top, name)
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISLNK(mode):
                continue
            need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
            if mode & need != need:
                found.append(os.path.relpath(path, "/etc"))
                if name in dirs:
                    dirs.remove(name)
    return tuple(found)


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
