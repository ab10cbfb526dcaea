"""`lab start SCENARIO --trainees a,b,...` from a terminal: one lab per trainee, built a few
at a time, with a progress bar (rich) on the terminal and plain lines elsewhere."""
from __future__ import annotations

import re

import pytest
from conftest import LAB_CMD, SESSION, STATE_ROOT, run_lab

pytestmark = pytest.mark.root

SCENARIO = "mail-server-down"


def test_a_class_started_at_a_terminal(module_labs, tmux):
    prefix = f"wbc{SESSION}"
    module_labs.names += [f"{prefix}-1", f"{prefix}-2"]  # taken down by the fixture
    names = f"ann-{SESSION},ben-{SESSION}"
    tmux.start([*LAB_CMD, "start", SCENARIO, "--trainees", names, "--lab", prefix,
                "--parallel", "2"])
    screen = tmux.wait_for("EXIT=", timeout=180)
    assert "EXIT=0" in screen, screen
    assert re.search(r"starting 2 labs, 2 at once .*2/2", screen), screen  # the bar, done
    assert f"[2/2] lab {prefix}-" in screen
    for n, name in enumerate(names.split(","), 1):
        assert re.search(rf"{name}\s+{prefix}-{n}\s+\d+\s+up", screen), screen
        assert (STATE_ROOT / f"{prefix}-{n}").is_dir()
    assert "TICKET: Mail is down, both ways" in screen


def test_progress_is_plain_lines_without_a_terminal(module_labs):
    prefix = f"wbd{SESSION}"
    module_labs.names += [f"{prefix}-1"]
    p = run_lab("start", SCENARIO, "--trainees", f"cay-{SESSION}", "--lab", prefix,
                timeout=180)
    assert p.returncode == 0, p.stderr
    assert f"[1/1] lab {prefix}-1 for cay-{SESSION}: up" in p.stderr.splitlines()
    assert "\x1b[" not in p.stderr  # no bar, no colours in a log
    assert "no Unix user" in p.stderr


@pytest.mark.parametrize("args,error", [
    (["--trainees", "ann,ann"], "named twice"),
    (["--trainees", "ann,../x"], "invalid trainee name"),
    (["--trainees", "ann", "--fault", "smtp-service-down"], "not with --trainees"),
    (["--trainees", "ann", "--trainee", "bob"], "not allowed with argument"),
    (["--trainees", "ann", "--lab", "x" * 31], "once numbered"),
])
def test_a_bad_class_starts_nothing(module_labs, args, error):
    before = set(STATE_ROOT.iterdir()) if STATE_ROOT.is_dir() else set()
    p = run_lab("start", SCENARIO, *args)
    started = (set(STATE_ROOT.iterdir()) if STATE_ROOT.is_dir() else set()) - before
    module_labs.names += [path.name for path in started]  # taken down if it went wrong
    assert p.returncode != 0 and error in p.stderr, p.stderr
    assert not started
