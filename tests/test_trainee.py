"""Trainees are ordinary Unix users (docs/security.md).

A user made for the test (removed afterwards) works on the lab bound to them (`lab start
--trainee USER`) with every trainee verb, from the host without root and from inside any
node of the lab; is refused on another trainee's lab and on every instructor verb; and
cannot read the attempt records, which are root's. `lab shell` is driven under tmux,
also when the lab goes down under it.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import LAB_CMD, STATE_ROOT, run_lab

pytestmark = pytest.mark.root

RESULTS = Path(os.environ.get("LAB_RESULTS", "/var/lib/lab/results"))
SCENARIO, SEED, ANSWER = "inbound-bounces", "3", ("dns-wrong-address", "ns-ext")
INSTRUCTOR_ONLY = "is for instructors (root on the host)"


class User:
    """A Unix user made for the test, and `lab` run as them."""

    def __init__(self) -> None:
        self.name = f"lt{uuid.uuid4().hex[:8]}"
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", self.name],
                       check=True)
        entry = pwd.getpwnam(self.name)
        self.uid, self.gid, self.home = entry.pw_uid, entry.pw_gid, Path(entry.pw_dir)
        self.prefix = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}",
                       "--init-groups", "--reset-env", "env",
                       f"LAB_STATE_ROOT={STATE_ROOT}", f"HOME={self.home}"]

    def lab(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return run_lab(*args, prefix=self.prefix, **kw)

    def remove(self) -> None:
        """The user, their home and the attempt records made under their name."""
        subprocess.run(["userdel", "--remove", self.name], check=False,
                       capture_output=True)
        shutil.rmtree(RESULTS / self.name, ignore_errors=True)


@pytest.fixture(scope="module")
def users():
    made: list[User] = []
    yield lambda: made.append(User()) or made[-1]
    for user in made:
        user.remove()


@pytest.fixture(scope="module")
def alice(users) -> User:
    return users()


@pytest.fixture(scope="module")
def mine(module_labs, alice) -> str:
    """Alice's attempt."""
    lab = module_labs.claim("t-tr-mine")
    p = run_lab("start", SCENARIO, "--seed", SEED, "--lab", lab, "--trainee", alice.name)
    assert p.returncode == 0, p.stderr
    return lab


@pytest.fixture(scope="module")
def other(module_labs, users, mine) -> str:
    """Another trainee's attempt."""
    lab = module_labs.claim("t-tr-other")
    p = run_lab("start", SCENARIO, "--seed", SEED, "--lab", lab, "--trainee", users().name)
    assert p.returncode == 0, p.stderr
    return lab


def ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, f"rc={p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def refused(p: subprocess.CompletedProcess, words: str) -> None:
    assert (p.returncode, p.stdout) == (1, ""), p.stdout + p.stderr
    lines = p.stderr.splitlines()
    assert lines[0].startswith("lab: error: ") and words in lines[0], p.stderr
    assert len(lines) <= 2


def test_trainee_never_sees_the_seed(mine, alice):
    """The seed and the scenario's pools give the draw: only the instructor's `lab start`
    prints it."""
    assert "seed" not in ok(alice.lab("ticket", "--lab", mine)).lower()


def test_a_trainee_name_that_is_no_user_binds_nobody(labs, alice):
    """The attempt is recorded under the name; only root can work on it."""
    lab = labs.claim("t-tr-nouser")
    p = run_lab("start", SCENARIO, "--lab", lab, "--trainee", "no-such-user-x")
    assert p.returncode == 0, p.stderr
    assert "note: no Unix user 'no-such-user-x': only root can work on this attempt" in p.stderr
    refused(alice.lab("ticket", "--lab", lab), f"lab {lab} is not yours")


# --- every trainee verb, on their own lab -----------------------------------------------

VERBS = [
    (["ls"], "t-tr-mine"),
    (["ticket"], "TICKET: "),
    (["hint"], "hint 1/"),
    (["causes"], "dns-wrong-address"),
    (["exec", "ext-ws", "--", "hostname"], "ext-ws"),
    (["exec", "fw", "--", "sh", "-c", "nft list ruleset | head -1"], "table"),
    (["verify", "alert"], "alert"),
    (["service", "resolver", "dns", "restart"], "dns on resolver: restart done"),
    (["submit", "dns-wrong-address", "--node", "mx"], "recorded"),
]


@pytest.mark.parametrize("args,words", VERBS, ids=lambda v: "_".join(v) if isinstance(v, list)
                         else None)
def test_trainee_verb_on_own_lab(mine, alice, args, words):
    """Without --lab: the trainee's only lab is found by itself."""
    p = alice.lab(*args)
    assert p.returncode in (0, 1) if args[0] == "verify" else p.returncode == 0, p.stderr
    assert words in p.stdout, p.stdout + p.stderr


@pytest.mark.parametrize("node", ["ext-ws", "fw", "admin"])
@pytest.mark.parametrize("args,words", [
    (["ticket"], "TICKET: "),
    (["exec", "mx", "--", "hostname"], "mx"),
    (["ls"], "t-tr-mine"),
], ids=["ticket", "exec-other-node", "ls"])
def test_trainee_verb_from_inside_a_node(mine, alice, node, args, words):
    p = alice.lab("exec", "--lab", mine, node, "--", "lab", *args)
    assert words in ok(p)


@pytest.mark.parametrize("args", [["status"], ["down"], ["faults"], ["results"],
                                  ["fault", "apply", "dns-wrong-address"]], ids=lambda a: a[0])
def test_instructor_verb_refused_inside_a_node(mine, alice, args):
    p = alice.lab("exec", "--lab", mine, "mx", "--", "lab", *args)
    assert p.returncode == 1
    assert INSTRUCTOR_ONLY in p.stderr


def test_node_channel_is_not_the_control_socket(mine, alice):
    """The node's socket answers only trainee requests (here: the root-only `status`)."""
    code = ("import json, socket\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
            "s.connect('/run/lab-node/lab.sock')\n"
            "s.send(json.dumps({'op': 'status'}).encode())\n"
            "print(s.recv(65536).decode())\n")
    reply = json.loads(ok(alice.lab("exec", "--lab", mine, "mx", "--", "python3", "-c", code)))
    assert reply["ok"] is False and "not something a trainee can ask" in reply["error"]


# --- refused ------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["ticket"], ["hint"], ["exec", "mx", "--", "true"], ["shell", "mx"],
    ["submit", "dns-wrong-address", "--node", "ns-ext"], ["score"], ["verify"],
    ["service", "mx", "smtp", "restart"],
], ids=lambda a: a[0])
def test_refused_on_another_trainees_lab(other, alice, args):
    p = alice.lab(args[0], "--lab", other, *args[1:])
    refused(p, f"lab {other} is not yours")


@pytest.mark.parametrize("args", [
    ["faults"], ["fault", "apply", "dns-wrong-address"], ["status"], ["down"], ["clean"],
    ["up", "mail-dmz"], ["start", SCENARIO], ["start", SCENARIO, "--fault", "dns-wrong-address"],
    ["results"], ["report", "x"], ["scenarios"], ["playbook", "run", "inbound", "--all"],
], ids=lambda a: "_".join(a[:2]))
def test_instructor_verbs_refused(mine, alice, args):
    refused(alice.lab(*args), INSTRUCTOR_ONLY)


def test_results_refused_for_trainee_score(mine, alice):
    refused(alice.lab("score", "--results", "/tmp"), "--results is for instructors")


def test_control_socket_unreachable(mine, alice):
    code = ("import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "try:\n"
            "    s.connect(sys.argv[1])\n"
            "except OSError as e:\n"
            "    print(e.strerror)\n")
    p = subprocess.run([*alice.prefix, "python3", "-c", code,
                        str(STATE_ROOT / mine / "control.sock")],
                       capture_output=True, text=True, check=False)
    assert p.stdout.strip() == "Permission denied"


def test_exec_refuses_a_directory_handed_in(mine, alice):
    """A directory (or a file) given to a node process as stdin would lead out of the
    node: the supervisor refuses anything but pipes, Unix sockets and /dev/null."""
    code = ("import os, sys\n"
            "from lab.engine import channel\n"
            "fd = os.open(os.path.expanduser('~'), os.O_RDONLY)\n"
            "try:\n"
            "    channel.request(sys.argv[1], 'exec', fds=[fd, 1, 2], node='mx',\n"
            "                    argv=['ls', '/proc/self/fd/0/'])\n"
            "except Exception as e:\n"
            "    print(e)\n")
    p = subprocess.run([*alice.prefix, str(Path(LAB_CMD[0]).with_name("python")), "-c", code,
                        mine], capture_output=True, text=True, check=False, cwd="/")
    assert "exec needs stdin, stdout and stderr as pipes or Unix sockets" in p.stdout, p


# --- the end of the attempt, and the records -------------------------------------------


def test_score_and_records_are_private(mine, alice):
    html = alice.home / "report.html"
    right = alice.lab("submit", *ANSWER[:1], "--node", ANSWER[1])
    assert "recorded" in ok(right)  # no right or wrong said (scenario feedback: recorded)
    out = ok(alice.lab("score", "--html", str(html)))
    assert "Score " in out and "attempt record" not in out  # where records are: root's
    assert html.stat().st_uid == alice.uid and "<html" in html.read_text()
    folder = RESULTS / alice.name
    [record] = list(folder.glob(f"{alice.name}_{SCENARIO}_*Z_{mine}.json"))
    for path, mode in ((RESULTS, 0o700), (folder, 0o700), (record, 0o600)):
        st = path.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (mode, 0), path
    p = subprocess.run([*alice.prefix, "cat", str(record)], capture_output=True, text=True,
                       check=False)
    assert p.returncode != 0 and "Permission denied" in p.stderr


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_results_lists_the_attempt(mine, alice, fmt):
    args = {"table": [], "json": ["--json"], "csv": ["--csv"]}[fmt]
    out = ok(run_lab("results", "--trainee", alice.name, *args))
    if fmt == "json":
        [row] = json.loads(out)
        assert (row["trainee"], row["scenario"], row["lab"]) == (alice.name, SCENARIO, mine)
        assert row["hints"] == 1 and row["submissions"] == 2 and row["score"] is not None
    else:
        assert f"{alice.name}_{SCENARIO}_" in out
    assert ok(run_lab("results", "--scenario", "no-such-scenario", *args)).count(alice.name) == 0


@pytest.mark.parametrize("fmt", ["text", "json", "html"])
def test_report_renders_a_recorded_attempt_again(mine, alice, fmt, tmp_path):
    [row] = json.loads(ok(run_lab("results", "--trainee", alice.name, "--json")))
    if fmt == "text":
        out = ok(run_lab("report", row["id"]))
        assert out.startswith(f"Scenario {SCENARIO}  lab {mine}  trainee {alice.name}")
        assert ok(run_lab("report", row["path"])) == out
    elif fmt == "json":
        report = json.loads(ok(run_lab("report", row["id"], "--json")))
        record = json.loads(Path(row["path"]).read_text())
        assert report == record["score"]
    else:
        ok(run_lab("report", row["id"], "--html", str(tmp_path / "r.html")))
        assert f"Score: {SCENARIO} ({alice.name})" in (tmp_path / "r.html").read_text()


def test_report_of_an_unknown_attempt(alice):
    refused(run_lab("report", "no-such-attempt"), "no attempt 'no-such-attempt'")


# --- lab shell, interactive -------------------------------------------------------------


@pytest.fixture(params=["instructor", "trainee"])
def who(request, alice) -> list[str]:
    return [] if request.param == "instructor" else alice.prefix


def test_shell_prompt_commands_and_exit_status(mine, who, tmux):
    tmux.start([*who, *LAB_CMD, "shell", "--lab", mine, "mx"])
    tmux.wait_for(f"[{mine}:mx]")
    tmux.type("hostname; tty; ps -o args= | head -1; echo DONE")
    screen = tmux.wait_for("\nDONE")
    assert "\nmx\n/dev/pts/0\nbash --norc -i\nDONE" in screen
    tmux.type("exit 3")
    tmux.wait_for("EXIT=3")


def test_shell_ends_and_says_so_when_the_lab_goes_down(labs, alice, who, tmux):
    lab = labs.claim("t-tr-down")
    ok(run_lab("start", SCENARIO, "--seed", SEED, "--lab", lab, "--trainee", alice.name))
    tmux.start([*who, *LAB_CMD, "shell", "--lab", lab, "fw"])
    tmux.wait_for(f"[{lab}:fw]")
    tmux.type("sleep 300 &")
    tmux.wait_for("[1] ")
    ok(labs.down(lab))
    screen = tmux.wait_for("EXIT=")
    assert f"lab: error: lab {lab} went down; the shell in fw has ended" in screen
    assert "EXIT=1" in screen


def test_state_root_lets_trainees_reach_only_the_sockets(mine):
    """Trainees may pass through the state root to the trainee sockets; the lab's own
    directory stays root's."""
    assert stat.S_IMODE(STATE_ROOT.stat().st_mode) == 0o711
    assert stat.S_IMODE((STATE_ROOT / mine).stat().st_mode) == 0o700
    public = STATE_ROOT / "_trainee" / f"{mine}.sock"
    assert stat.S_ISSOCK(public.stat().st_mode) and stat.S_IMODE(public.stat().st_mode) == 0o666
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with probe:
        probe.connect(str(public))  # it answers
