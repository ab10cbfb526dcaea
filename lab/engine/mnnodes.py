"""The Mininet classes a lab's network is built with: Mininet's own host, interface and
Linux bridge, configured by one script per node instead of a command per setting.

Mininet sets an interface up as it creates it (ifconfig for its address, another to bring
it up), then each host's default interface and loopback again, then each bridge with
brctl: each a round trip through the node's shell and a program started, about a hundred
per lab, one node after the other. These classes only record what Mininet would set; the
node's configuration script (lab.engine.network: the links, bridge and addresses in one
``ip -batch``, sysctls written by the shell itself) sets it, in every node at once. The
node shells start without ``mnexec -c``, which closes every descriptor number up to the
limit one by one (20,000 here): the shell's Popen closes the open ones. They are dash, not
Mininet's bash: only the lab's own scripts run in them (a person's shell in a node is
bash, sealed: lab.engine.nodeshell), and a lab holds a dozen of them for its whole life,
each with 0.11 MB of memory of its own against bash's 0.29.
"""
from __future__ import annotations

import os
import shutil
import termios

from mininet.link import Intf, Link
from mininet.node import Host
from mininet.nodelib import LinuxBridge

from lab.errors import LabError

# what a node's shell and configuration script run (Mininet checks its own with `which`)
REQUIRED = ("mnexec", "dash", "ip", "mount")
_PROMPT = "PS1=" + chr(127)  # Mininet's prompt: how it knows a command has ended
_BASH = ["bash", "--norc", "--noediting", "-is"]  # Mininet's shell (and dash's stand-in)
_MININET_FIRST = "unset HISTFILE; stty -echo; set +m"  # what Mininet sends a new shell first


def _no_echo(tty: int) -> None:
    """``stty -echo`` on the shell's terminal, before the shell starts."""
    attrs = termios.tcgetattr(tty)
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(tty, termios.TCSANOW, attrs)


def _require() -> None:
    missing = [prog for prog in REQUIRED if shutil.which(prog) is None]
    if missing:
        raise LabError("missing programs: " + ", ".join(missing),
                       hint="`make install` installs what the lab needs")


class LabIntf(Intf):
    """An interface whose address is recorded, not set: the node's script sets it."""

    def config(self, mac=None, ip=None, ifconfig=None, up=True, **_params) -> dict:
        if ip is not None:
            self.setIP(ip)
        return {}

    def setIP(self, ipstr: str, prefixLen=None) -> str:
        self.ip, self.prefixLen = ipstr.split("/") if "/" in ipstr else (ipstr, prefixLen)
        return ""


class ScriptedLink(Link):
    """A link whose veth pair the segment's script makes (lab.engine.network.veth_line)."""

    @classmethod
    def makeIntfPair(cls, *_args, **_kwargs) -> None:
        pass


class _Shell:
    """A node shell, dash, started by ``mnexec -d`` (no -c) whose Popen closes the
    descriptors and sets its prompt (Mininet runs `env PS1=...`), on a terminal that does
    not echo and without job control (Mininet's first command, `stty -echo; set +m`, a
    round trip and a program started, is not sent); the programs the scripts need checked
    with shutil.which (Mininet runs `which`)."""

    def startShell(self, mnopts=None) -> None:
        super().startShell("-d" if mnopts is None else mnopts)

    def _popen(self, cmd, **params):
        params["close_fds"] = True
        if cmd[2:4] == ["env", _PROMPT] and cmd[4:8] == _BASH:  # Mininet's node shell
            cmd = cmd[:2] + ["dash", "-i", "+m", "-s"] + cmd[8:]
            params["env"] = {**(params.get("env") or os.environ), "PS1": _PROMPT[4:]}
            _no_echo(params["stdin"])
            self.quiet_start = True
        return super()._popen(cmd, **params)

    def cmd(self, *args, **kwargs):
        if args == (_MININET_FIRST,) and getattr(self, "quiet_start", False):
            return ""  # done as the shell started (_popen)
        return super().cmd(*args, **kwargs)

    @classmethod
    def setup(cls) -> None:
        _require()


class LabHost(_Shell, Host):
    """A host whose default interface and loopback its script configures."""

    def config(self, mac=None, ip=None, defaultRoute=None, lo="up", **_params) -> dict:
        if ip is not None:
            self.setIP(ip)
        return {}


class LabBridge(_Shell, LinuxBridge):
    """A Linux bridge made, with its ports, by the segment's script."""

    def start(self, _controllers) -> None:
        pass
