"""A sealed node, tried as a trainee would try it (docs/security.md).

Every escape attempt is run from inside a node with `lab exec` (the path every person's
command takes; a trainee's comes through the trainee channel to the same sealing, see
tests/test_trainee.py) and must fail. Attempts that would change the host if they
succeeded are made harmless: they write back the value already there, or aim at a
process or file this test made for the purpose. Then what a trainee needs is checked to
still work in the sealed node.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, STATE_ROOT

pytestmark = pytest.mark.root

LAB = "t-seal"
RESULTS = Path(os.environ.get("LAB_RESULTS", "/var/lib/lab/results"))
SEALED_CAPS = 0xa00435fb  # chown dac_override fowner fsetid kill setgid setuid setpcap
#                           net_bind_service net_admin net_raw sys_chroot audit_write setfcap


@pytest.fixture(scope="module")
def state(lab, lab_state) -> dict:
    return lab_state(lab)


def sh(x, node: str, script: str, **kw) -> subprocess.CompletedProcess:
    return x(node, "sh", "-c", script, **kw)


def py(x, node: str, code: str, **kw) -> subprocess.CompletedProcess:
    return x(node, "python3", "-c", code, **kw)


# --- what the node sees of processes -------------------------------------------------


def test_only_the_nodes_processes_are_visible(x):
    p = sh(x, "mx", "for d in /proc/[0-9]*; do tr '\\0' ' ' < $d/cmdline; echo; done")
    assert p.returncode == 0, p.stderr
    seen = p.stdout
    assert "sleep 86400" in seen  # positive control: the node's init is there
    for outside in ("lab.engine.supervisor", "mininet:", "bwrap", "pytest"):
        assert outside not in seen


def test_supervisor_pid_is_not_the_supervisor(x, state):
    """Its host PID means nothing in the node: no such process, or one of the node's."""
    pid = state["supervisor"]["pid"]
    p = sh(x, "mx", f"tr '\\0' ' ' < /proc/{pid}/cmdline")
    assert "lab.engine.supervisor" not in p.stdout


@pytest.mark.parametrize("what", ["root", "cwd", "environ", "mem", "fd/0"])
def test_init_is_out_of_reach(x, what):
    """PID 1 of the node is the lab's: more capabilities than a trainee's processes."""
    read = f"ls /proc/1/{what}/" if what in ("root", "cwd") else f"head -c1 /proc/1/{what}"
    p = sh(x, "mx", read + " >/dev/null")
    assert p.returncode != 0
    assert "Permission denied" in p.stderr


def test_proc_root_of_every_process_is_the_nodes(x):
    p = sh(x, "mx", f"ls -d /proc/[0-9]*/root/{STATE_ROOT} /proc/[0-9]*/root/{RESULTS} "
                    "/proc/[0-9]*/root/home 2>/dev/null; echo done")
    assert p.stdout == "done\n"


@pytest.mark.parametrize("args", [["-t", "1", "-m", "-n"], ["--mount=/proc/1/ns/mnt"],
                                  ["--net=/proc/self/ns/net"]], ids=["pid1", "mnt", "net"])
def test_nsenter_fails(x, args):
    p = x("mx", "nsenter", *args, "true")
    assert p.returncode != 0
    assert "Operation not permitted" in p.stderr or "Permission denied" in p.stderr


def test_ptrace_fails(x, state):
    code = ("import ctypes, os, sys\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "for pid in (1, int(sys.argv[1])):\n"
            "    r = libc.ptrace(16, pid, 0, 0)\n"  # PTRACE_ATTACH
            "    print(pid, r, os.strerror(ctypes.get_errno()))\n")
    p = x("mx", "python3", "-c", code, str(state["supervisor"]["pid"]))
    lines = p.stdout.splitlines()
    assert lines[0].startswith("1 -1 Operation not permitted"), p.stdout
    assert " -1 " in lines[1] and "Operation not permitted" not in lines[1], p.stdout


def test_kill_outside_fails(x):
    victim = subprocess.Popen(["sleep", "60"])
    try:
        p = x("mx", "kill", "-9", str(victim.pid))
        assert p.returncode != 0
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_kill_all_leaves_the_node_standing(x):
    """`kill -9 -1` ends the trainee's own processes, never the node (PID 1 ignores them)."""
    sh(x, "mx", "kill -9 -1")
    assert x("mx", "true").returncode == 0


# --- what the node sees of files -----------------------------------------------------


def host_block_devices() -> list[str]:
    return sorted(f"/dev/{d}" for d in os.listdir("/sys/class/block"))


def test_no_disk_device(x):
    devices = host_block_devices()
    assert devices  # positive control: the host has some
    p = sh(x, "mx", " ".join(f"head -c1 {d};" for d in devices) + " ls /dev")
    assert p.stdout.split() == ["core", "fd", "full", "null", "ptmx", "pts", "random", "shm",
                                "stderr", "stdin", "stdout", "tty", "urandom", "zero"]
    assert all(f"'{d}' for reading: No such file" in p.stderr for d in devices), p.stderr


def test_mknod_fails(x):
    p = sh(x, "mx", "mknod /tmp/disk b 254 0")
    assert p.returncode != 0 and "Operation not permitted" in p.stderr


def host_unix_sockets() -> list[str]:
    lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    return sorted({f.split()[-1] for f in lines if len(f.split()) == 8
                   and f.split()[-1].startswith("/")})


def test_no_host_unix_socket_is_reachable(x):
    sockets = host_unix_sockets() + [str(STATE_ROOT / "any" / "control.sock")]
    code = ("import socket, sys\n"
            "for path in sys.stdin.read().split():\n"
            "    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET):\n"
            "        s = socket.socket(socket.AF_UNIX, kind)\n"
            "        try:\n"
            "            s.connect(path); print('CONNECTED', path)\n"
            "        except OSError:\n"
            "            pass\n"
            "        s.close()\n")
    p = x("mx", "python3", "-c", code, input="\n".join(sockets + ["/run/lab-node/lab.sock"]))
    assert p.returncode == 0, p.stderr
    # positive control: the node's own trainee channel is there (and only that)
    assert p.stdout.splitlines() == ["CONNECTED /run/lab-node/lab.sock"]


def test_control_socket_is_absent(x, lab):
    p = x("mx", "test", "-e", str(STATE_ROOT / lab / "control.sock"))
    assert p.returncode == 1


@pytest.mark.parametrize("path", [k for k in ("kernel/core_pattern", "kernel/modprobe",
                                               "kernel/hostname", "vm/drop_caches")
                                  if os.path.exists(f"/proc/sys/{k}")])
def test_kernel_knobs_are_read_only(x, path):
    """Written with the value already there: harmless even if it got through."""
    current = Path(f"/proc/sys/{path}").read_text() if path != "vm/drop_caches" else "0\n"
    p = sh(x, "mx", f"printf '%s' \"$V\" > /proc/sys/{path}", env={**os.environ, "V": current})
    assert p.returncode != 0 and "Read-only file system" in p.stderr
    if path != "vm/drop_caches":
        assert Path(f"/proc/sys/{path}").read_text() == current


def test_node_network_knobs_stay_writable(x):
    p = sh(x, "admin", "sysctl -w net.ipv4.conf.eth0.log_martians=1 && "
                       "sysctl -w net.ipv4.conf.eth0.log_martians=0")
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("name", ["keys", "key-users", "timer_list", "sysrq-trigger", "kmsg"])
def test_proc_masks(x, name):
    if not os.path.exists(f"/proc/{name}"):
        pytest.skip(f"this kernel has no /proc/{name}")
    p = x("mx", "cat", f"/proc/{name}")
    assert p.stdout == ""


def unreadable_host_etc() -> list[str]:
    from lab.engine.layout import unreadable_etc

    return [f"/etc/{e}" for e in unreadable_etc()]


def host_secrets() -> list[str]:
    """The host's unreadable /etc files, and everything in its unreadable directories (a
    node has those directories, opaque: empty but for what the lab puts there, such as a
    mail server's TLS key in /etc/ssl/private)."""
    found = []
    for entry in unreadable_host_etc():
        if os.path.isdir(entry) and not os.path.islink(entry):
            found += [os.path.join(top, name) for top, dirs, files in os.walk(entry)
                      for name in dirs + files]
        else:
            found.append(entry)
    return found


def test_host_secrets_in_etc_are_not_in_the_node(x):
    """No host secret shows in a node: secret files are absent, secret directories are the
    node's own (opaque) and show none of the host's entries."""
    secrets_ = host_secrets()
    assert "/etc/shadow" in secrets_  # positive control
    files = [s for s in secrets_ if not Path(s).is_dir()]
    p = sh(x, "mx", " ".join(f"ls -d {s};" for s in files) + " echo done")
    assert p.stdout == "done\n", p.stdout
    for d in (s for s in secrets_ if Path(s).is_dir()):
        seen = set(sh(x, "mx", f"ls -A {d} 2>/dev/null").stdout.split())
        assert not seen & set(os.listdir(d)), d


@pytest.mark.parametrize("path", ["/home", "/var/lib", pytest.param(str(RESULTS), id="results"),
                                  pytest.param(str(STATE_ROOT), id="state-root"),
                                  str(PROJECT_ROOT / "scenarios"),
                                  str(PROJECT_ROOT / "playbooks"),
                                  str(PROJECT_ROOT / "tests"), str(PROJECT_ROOT / ".git"),
                                  "/mnt", "/opt", "/srv", "/boot"])
def test_host_paths_are_not_in_the_node(x, path):
    assert x("mx", "test", "-e", path).returncode == 1


def test_root_and_tmp_are_the_nodes_own_and_empty(x):
    # the lab's code is mounted at its own path: under /tmp when the checkout is there
    code_top = [PROJECT_ROOT.parts[2]] if PROJECT_ROOT.parts[1] == "tmp" else []
    assert ok(x("ext-ws", "ls", "-A", "/root")) == ""
    assert ok(x("ext-ws", "ls", "-A", "/tmp")).split() == code_top
    ok(x("ext-ws", "touch", "/tmp/sealtest", "/root/sealtest"))
    assert not Path("/tmp/sealtest").exists() and not Path("/root/sealtest").exists()


@pytest.mark.parametrize("path", [str(PROJECT_ROOT / "lab" / "cli.py"), "/usr/bin/sealtest",
                                  "/sealtest", str(Path(sys.prefix) / "sealtest"),
                                  "/proc/sealtest", "/sys/sealtest", "/dev/sealtest"])
def test_host_paths_are_read_only(x, path):
    before = Path(path).read_bytes() if Path(path).is_file() else None
    p = sh(x, "mx", f"echo pwned >> {path}")
    assert p.returncode != 0, path
    assert (Path(path).read_bytes() if Path(path).is_file() else None) == before


def test_cwd_is_inside_the_node(x):
    """A working directory opened outside the node would lead out of it (`cd ..`)."""
    p = sh(x, "mx", "pwd; cd ../../..; pwd; ls")
    assert p.stdout.splitlines()[:2] == ["/root", "/"]
    assert "boot" not in p.stdout.split() and "home" not in p.stdout.split()


INIT_MODULE = ("import ctypes, os\n"
               "libc = ctypes.CDLL(None, use_errno=True)\n"
               "buf = ctypes.create_string_buffer(b'\\0' * 64)\n"
               "r = libc.syscall(175, buf, 64, b'')\n"  # init_module(2) on x86-64
               "print(os.strerror(ctypes.get_errno()))\n")


def test_module_load_fails(x):
    """init_module(2) with garbage: EPERM without CAP_SYS_MODULE, a parse error with it."""
    if os.uname().machine != "x86_64":
        pytest.skip("the syscall number is x86-64's")
    host = subprocess.run([sys.executable, "-c", INIT_MODULE], capture_output=True,
                          text=True, check=True).stdout.strip()
    if host == "Function not implemented":
        pytest.skip("this kernel cannot load modules at all (no CONFIG_MODULES)")
    assert py(x, "mx", INIT_MODULE).stdout.strip() == "Operation not permitted"


@pytest.mark.parametrize("script", [
    "mount -t tmpfs none /tmp",
    "mount --bind /etc /tmp",
    "umount /etc",
    "unshare -Urm --mount-proc true",  # a user namespace may be made; procfs never mounted
    "unshare -m true",
], ids=["tmpfs", "bind", "umount", "userns-proc", "mntns"])
def test_mount_fails(x, script):
    p = sh(x, "mx", script)
    assert p.returncode != 0, p.stderr


@pytest.mark.parametrize("script", [
    "capsh --caps=cap_sys_admin+eip -- -c true",
    "setpriv --inh-caps=+sys_admin --ambient-caps=+sys_admin true",
    "setpriv --bounding-set=+sys_module true && grep CapBnd /proc/self/status",
], ids=["capsh", "setpriv-ambient", "setpriv-bounding"])
def test_capability_raise_fails(x, script):
    p = sh(x, "mx", script)
    assert p.returncode != 0 or f"{SEALED_CAPS:016x}" in p.stdout


@pytest.mark.parametrize("node", ["mx", "fw"])
def test_capabilities_and_no_new_privs(x, node):
    status = x(node, "cat", "/proc/self/status").stdout
    fields = dict(re.findall(r"^(\w+):\s+(\S+)", status, re.MULTILINE))
    assert int(fields["CapBnd"], 16) == SEALED_CAPS
    assert int(fields["CapEff"], 16) == SEALED_CAPS
    assert int(fields["CapInh"], 16) == int(fields["CapAmb"], 16) == 0
    assert fields["NoNewPrivs"] == "1"


def test_hostname_cannot_be_changed(x):
    before = os.uname().nodename
    p = x("mx", "hostname", "sealtest")
    assert p.returncode != 0
    assert os.uname().nodename == before


@pytest.mark.parametrize("fd", [0, 1, 2])
def test_a_host_terminal_never_enters_the_node(lab, lab_command, fd):
    """`lab exec` relays a terminal through a pipe: a node process gets no handle on the
    caller's terminal (to read its keys, or push input into it)."""
    import pty

    cmd, cwd = lab_command
    master, slave = pty.openpty()
    out = os.open(os.devnull, os.O_WRONLY)
    r, w = os.pipe()
    streams = {0: subprocess.DEVNULL, 1: out, 2: out}
    streams[fd] = slave
    report = f"readlink /proc/self/fd/{fd} >&{3}"
    try:
        p = subprocess.run([*cmd, "exec", "--lab", lab, "mx", "--", "sh", "-c",
                            report.replace(">&3", f">/proc/self/fd/{1 if fd != 1 else 2}")],
                           stdin=streams[0], stdout=w if fd != 1 else slave,
                           stderr=w if fd == 1 else streams[2], cwd=cwd, timeout=30, check=False)
        os.close(w)
        seen = os.read(r, 4096).decode()
    finally:
        for f in (master, slave, out, r):
            os.close(f)
    assert p.returncode == 0
    assert seen.startswith("pipe:"), seen


# --- the node still works --------------------------------------------------------------


def ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, f"rc={p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


@pytest.mark.parametrize("node", ["mx", "fw", "ext-ws"])
def test_hostname_is_the_nodes(x, node):
    assert ok(x(node, "hostname")) == f"{node}\n"
    assert ok(x(node, "uname", "-n")) == f"{node}\n"


def test_dig(x):
    assert ok(x("ext-ws", "dig", "+short", "mx", "example.net")).strip().endswith(".")


def test_nslookup(x):
    assert "203.0.113.25" in ok(x("ext-ws", "nslookup", "mail.example.net"))


def test_ping(x):
    ok(x("admin", "ping", "-c1", "-W2", "10.1.0.25"))


def test_nc(x):
    assert "220" in ok(sh(x, "admin", "echo QUIT | nc -w3 10.1.0.25 25"))


def test_telnet(x):
    p = sh(x, "admin", "(sleep 1; echo QUIT; sleep 1) | telnet 10.1.0.25 25")
    assert "Connected to 10.1.0.25" in p.stdout and "220" in p.stdout


def test_swaks(x):
    out = ok(x("admin", "swaks", "--server", "10.1.0.25", "--to", "postmaster@example.net",
               "--from", "admin@example.net", "--timeout", "5"))
    assert "250" in out


def test_tcpdump_writes_and_reads_a_capture_in_tmp(x):
    out = ok(sh(x, "admin", "tcpdump -i eth0 -c 2 -w /tmp/x.pcap icmp 2>/dev/null & "
                            "sleep 0.5; ping -c2 -W1 10.1.0.25 >/dev/null; wait; "
                            "tcpdump -nr /tmp/x.pcap 2>/dev/null"))
    assert "ICMP echo request" in out


def test_nft_ruleset_and_a_rule_change_on_fw(x):
    assert "table" in ok(x("fw", "nft", "list", "ruleset"))
    ok(sh(x, "fw", "nft add table inet sealtest && nft add chain inet sealtest c && "
                   "nft add rule inet sealtest c counter && nft list table inet sealtest"))
    ok(x("fw", "nft", "delete", "table", "inet", "sealtest"))


def test_zone_file_can_be_edited_on_ns_ext(x):
    path = "/etc/bind/db.example.net"
    before = ok(x("ns-ext", "cat", path))
    ok(sh(x, "ns-ext", f"sed -i '$a ; sealtest' {path}"))
    try:
        assert ok(x("ns-ext", "tail", "-1", path)) == "; sealtest\n"
    finally:
        ok(x("ns-ext", "sh", "-c", f"cat > {path}", input=before))


def test_ip_route_changes(x):
    ok(x("admin", "ip", "route", "add", "198.51.100.0/24", "via", "10.1.0.1"))
    try:
        assert "198.51.100.0/24 via 10.1.0.1" in ok(x("admin", "ip", "route"))
    finally:
        ok(x("admin", "ip", "route", "del", "198.51.100.0/24"))


def test_netguard(x):
    ok(x("fw", "netguard", "-An"))


def test_mailq(x):
    assert "queue" in ok(x("mx", "mailq")).lower()


def test_two_commands_in_a_node_see_each_other(lab, lab_command, x):
    cmd, cwd = lab_command
    first = subprocess.Popen([*cmd, "exec", "--lab", lab, "mx", "--", "sleep", "31"], cwd=cwd)
    try:
        out = ok(sh(x, "mx", "for i in $(seq 50); do ps -eo args | grep -qx 'sleep 31' && "
                             "exit 0; sleep 0.1; done; exit 1"))
        assert out == ""
        assert ok(sh(x, "ns-int", "ps -eo args | grep -cx 'sleep 31' || true")) == "0\n"
    finally:
        first.terminate()
        first.wait()


def test_command_ends_with_its_caller(lab, lab_command, state):
    """Killing `lab exec` kills what it runs in the node (no orphan left behind)."""
    cmd, cwd = lab_command
    proc = subprocess.Popen([*cmd, "exec", "--lab", lab, "mx", "--", "sleep", "77"], cwd=cwd)
    try:
        netns = state["nodes"]["mx"]["netns"]
        import time

        deadline = time.monotonic() + 10
        while not _sleepers(netns) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _sleepers(netns)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _sleepers(netns) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _sleepers(netns)
    finally:
        if proc.poll() is None:
            proc.kill()


def _sleepers(netns: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if (os.stat(f"/proc/{entry.name}/ns/net").st_ino == netns and
                        Path(f"/proc/{entry.name}/cmdline").read_bytes() == b"sleep\x0077\x00"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_hidden_layer_survives_an_entry_that_vanishes(tmp_path, monkeypatch):
    """An unreadable /etc entry listed, then gone before the layer is made (useradd's
    /etc/subgid.lock, while another lab is being made): the layer is made all the same,
    and hides everything else."""
    from lab.engine import layout

    listed = layout.unreadable_etc()
    monkeypatch.setattr(layout, "unreadable_etc", lambda: (*listed, "gone-since.lock"))
    layer = layout.hidden_layer(tmp_path)
    assert layer.is_dir()
    for entry in listed:
        assert os.path.lexists(layer / entry), entry
