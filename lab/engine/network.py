"""Builds a topology's network with Mininet.

One namespace (network + mount) per node; one Linux bridge per segment, each bridge in a
namespace of its own. Interfaces are created directly inside those namespaces (Mininet
2.3 makes veth pairs from inside the first node's namespace), so no lab interface,
bridge or address ever exists in the host namespace and names never clash between labs:
every node has eth0, eth1, ...; every bridge is named after its segment.
"""
from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from lab.engine.layout import NodeFiles
from lab.engine.procs import mntns_inode, netns_cookie, netns_inode
from lab.engine.state import NodeRecord, ProcRef
from lab.errors import LabError
from lab.model.topology import Node, Topology

OK_MARK = "__lab_ok__"


@dataclass
class LabNetwork:
    """The Mininet network of one lab and the handles the supervisor needs."""

    net: object
    hosts: dict[str, object]
    switches: dict[str, object]

    def node(self, name: str):
        try:
            return self.hosts[name]
        except KeyError:
            raise LabError(f"unknown node '{name}'",
                           hint="known nodes: " + ", ".join(sorted(self.hosts))) from None

    def records(self, inits: dict[str, ProcRef]) -> dict[str, NodeRecord]:
        out = {}
        for kind, group in (("host", self.hosts), ("switch", self.switches)):
            for name, node in group.items():
                ref = ProcRef.of(node.pid)
                init = inits.get(name, ProcRef(0, 0))
                out[name] = NodeRecord(ref.pid, ref.start, netns_inode(node.pid) or 0,
                                       mntns_inode(node.pid) or 0, kind,
                                       netns_cookie(node.pid) or 0, init.pid, init.start)
        return out


def build(topo: Topology, files: dict[str, NodeFiles], files_ready: Callable[[], object] | None = None,
          configured: Callable[[dict[str, int]], Callable[[], object]] | None = None
          ) -> LabNetwork:
    """Create and start the network; configure addresses, routes and private files.

    Most of a build waits for Mininet's node shells; the caller's own work is done then:
    ``files_ready()`` returns once the nodes' files exist (they are mounted next), and
    ``configured(pids)``, called once every node is configured (node -> Mininet PID),
    starts more work and returns what waits for its end, called after the segment check.
    Mininet only starts the shells here (lab.engine.mnnodes): each segment's script makes
    its links and bridge, then each node's script configures the node, all nodes at once.
    """
    from mininet.log import setLogLevel
    from mininet.net import Mininet

    from lab.engine.mnnodes import LabBridge, LabHost, LabIntf, ScriptedLink

    setLogLevel("error")
    net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False,
                  waitConnected=False, switch=LabBridge, host=LabHost, intf=LabIntf,
                  link=ScriptedLink)
    lab = LabNetwork(net, {}, {})
    try:
        _add_nodes(net, topo, lab, LabHost, LabBridge)
        ports: dict[str, list[tuple[str, str, int]]] = {seg: [] for seg in topo.segments}
        for name, node in topo.nodes.items():
            for idx, intf in enumerate(node.interfaces):
                port = f"{intf.segment}-p{len(ports[intf.segment]) + 1}"
                ports[intf.segment].append((port, f"eth{idx}", lab.hosts[name].pid))
                net.addLink(lab.hosts[name], lab.switches[intf.segment], intfName1=f"eth{idx}",
                            intfName2=port, params1={"ip": str(intf.address)})
        net.build()
        net.start()
        _run_checked_all({lab.switches[seg]: (seg, segment_commands(seg, links))
                          for seg, links in ports.items()})
        if files_ready is not None:
            files_ready()
        _run_checked_all({lab.hosts[name]: (name, setup_commands(node, files[name]))
                          for name, node in topo.nodes.items()})
        finish = configured({n: h.pid for n, h in lab.hosts.items()}) if configured else None
        _check_segments(topo, lab)
        if finish is not None:
            finish()
    except LabError:
        stop_shells(lab)
        raise
    except Exception as e:  # Mininet raises bare Exceptions
        stop_shells(lab)
        raise LabError(f"building the network failed: {e}") from e
    return lab


def _sysctl(key: str, value: int) -> str:
    """Set a sysctl of the node's namespace by the shell itself (no program started)."""
    return f"echo {value} > /proc/sys/{key.replace('.', '/')}"


_NO_IPV6 = [_sysctl("net.ipv6.conf.all.disable_ipv6", 1),
            _sysctl("net.ipv6.conf.default.disable_ipv6", 1)]


def ip_batch(lines: list[str]) -> str:
    """One `ip -batch` running ``lines`` (ip's own commands), fed by printf: one line of
    POSIX shell for the node's dash."""
    return f"printf '%s\\n' {' '.join(shlex.quote(line) for line in lines)} | ip -batch -"


def veth_line(port: str, intf: str, host_pid: int) -> str:
    """The veth pair between a segment's bridge port and a node's ``intf``, made in the
    bridge's namespace with its peer in the node's: a node's ethN gets interface index
    N+2 (what it would get anyway: lo is 1), the bridge's end 1000 + its port number. The
    kernel brings a veth up at once only when its index differs from its peer's (a peer in
    another namespace may have the same number); otherwise up to a second later, and a
    lab's first packets would wait for it."""
    index = int(intf.removeprefix("eth")) + 2
    port_index = 1000 + int(port.rsplit("-p", 1)[1])
    return (f"link add name {port} index {port_index} type veth "
            f"peer name {intf} index {index} netns {host_pid}")


def segment_commands(segment: str, links: list[tuple[str, str, int]]) -> list[str]:
    """A segment's script, in its bridge's namespace: its links to the nodes (bridge port,
    node interface, node PID), the bridge (as Mininet's LinuxBridge: no STP) with every
    port in it, all up."""
    lines = [veth_line(*link) for link in links] + [f"link add name {segment} type bridge"]
    for port, _intf, _pid in links:
        lines += [f"link set {port} master {segment}", f"link set {port} up"]
    return _NO_IPV6 + [ip_batch(lines + [f"link set {segment} up"])]


def setup_commands(node: Node, files: NodeFiles) -> list[str]:
    """Shell commands that turn a fresh Mininet host into the node the topology describes:
    its addresses (the first of each interface as Mininet's ifconfig sets it: with the
    subnet's broadcast), links up, routes, forwarding, and its /etc layer."""
    cmds = list(_NO_IPV6)
    if node.forwarding:
        cmds.append(_sysctl("net.ipv4.ip_forward", 1))
    lines = ["link set lo up"]
    for idx, intf in enumerate(node.interfaces):
        lines += [f"addr add {intf.address} brd + dev eth{idx}", f"link set eth{idx} up"]
        lines += [f"addr add {alias} dev eth{idx}" for alias in intf.aliases]
    if node.gateway:
        lines.append(f"route replace default via {node.gateway}")
    lines += [f"route replace {route.to} via {route.via}" for route in node.routes]
    return cmds + [ip_batch(lines)] + files.mount_commands()


def _add_nodes(net, topo: Topology, lab: LabNetwork, host_cls, bridge_cls) -> None:
    """Start every node's shell at once: each start mostly waits for a new shell in new
    namespaces, so starting them side by side saves most of that wait."""
    from concurrent.futures import ThreadPoolExecutor

    def add_switch(i_seg):
        i, seg = i_seg
        return seg, net.addSwitch(seg, cls=bridge_cls, inNamespace=True, dpid=f"{i:x}")

    def add_host(item):
        name, node = item
        return name, net.addHost(name, cls=host_cls, ip=str(node.interfaces[0].address))

    with ThreadPoolExecutor(max_workers=8) as pool:
        switches = pool.map(add_switch, enumerate(topo.segments, start=1))
        hosts = pool.map(add_host, topo.nodes.items())
        lab.switches.update(switches)
        lab.hosts.update(hosts)
    # keep Mininet's lists in topology order, whatever order the threads finished in
    order = list(topo.segments) + list(topo.nodes)
    net.switches.sort(key=lambda n: order.index(n.name))
    net.hosts.sort(key=lambda n: order.index(n.name))


def _check_segments(topo: Topology, lab: LabNetwork) -> None:
    """Every node answers on every segment it is attached to: the first node of each
    segment pings all the others at once. A lab is only "up" once its links carry
    traffic, and the neighbour caches this fills spare the first real packet a wait."""
    scripts = {}
    for seg in topo.segments:
        members = [(name, intf.address.ip) for name, node in topo.nodes.items()
                   for intf in node.interfaces if intf.segment == seg]
        if len(members) < 2:
            continue
        (first, _), peers = members[0], members[1:]
        pings = " ".join(f"{{ ping -q -n -c1 -W1 {addr} || ping -q -n -c1 -W2 {addr}; }}"
                         f" >/dev/null || echo NOANSWER {name};" for name, addr in peers)
        scripts[lab.hosts[first]] = (first, seg, f"( {pings} ) 2>&1")
    for node, (_first, _seg, script) in scripts.items():
        node.sendCmd(script)
    silent = []
    for node, (first, seg, _script) in scripts.items():
        out = node.waitOutput()
        silent += [f"{line.split()[1]} (segment {seg}, pinged from {first})"
                   for line in out.splitlines() if line.startswith("NOANSWER")]
    if silent:
        raise LabError("nodes do not answer on their segment: " + ", ".join(silent))


def _run_checked_all(scripts: dict) -> None:
    """Run one configuration script in every node at once; fail naming the node."""
    for node, (_name, cmds) in scripts.items():
        node.sendCmd(" && ".join(cmds) + f" && echo {OK_MARK}")
    failed = []
    for node, (name, _cmds) in scripts.items():
        out = node.waitOutput()
        if OK_MARK not in out:
            failed.append(f"{name}: {out.strip()[:300]}")
    if failed:
        raise LabError("configuring nodes failed: " + "; ".join(failed))


def kill_shells(lab: LabNetwork) -> list:
    """SIGKILL every node shell, without waiting; the kernel then removes their
    namespaces, veths and bridges. The nodes."""
    nodes = list(lab.hosts.values()) + list(lab.switches.values())
    for node in nodes:
        shell = getattr(node, "shell", None)
        if shell is not None and shell.poll() is None:
            shell.kill()
    return nodes


def stop_shells(lab: LabNetwork) -> None:
    """Kill every node shell and wait until they are gone."""
    nodes = kill_shells(lab)
    deadline = time.monotonic() + 5
    for node in nodes:
        shell = getattr(node, "shell", None)
        if shell is not None:
            try:
                shell.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass  # a shell still running after the deadline: Mininet's stop kills it


def quote(args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)
