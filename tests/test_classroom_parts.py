"""The classroom's pure parts, without a server or a lab: trainee names, lab names, token
look-up, the live view's grades, the dashboard's export, terminal sizes, CLI progress."""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

from lab.engine import batch
from lab.engine.liveview import live_view, submission_grade
from lab.errors import LabError
from lab.model.scenario import Accept
from lab.progress import Progress
from lab.scoring.attempt import Attempt, FaultKey
from lab.web import auth
from lab.web.roster import EXPORT_FIELDS, Classroom, Trainee
from lab.web.serve import parse_listen
from lab.web.terminal import clamp_size


@pytest.mark.parametrize("text,names", [
    ("alice, bob", ["alice", "bob"]),
    ("alice\nbob\n\ncarol ", ["alice", "bob", "carol"]),
    ("a.b_c-d", ["a.b_c-d"]),
])
def test_trainee_names(text, names):
    assert batch.trainee_names(text) == names


@pytest.mark.parametrize("text,error", [
    ("", "no trainee names"),
    ("alice alice", "named twice"),
    ("../root", "invalid trainee name"),
    ("-alice", "invalid trainee name"),
    ("<script>", "invalid trainee name"),
    ("x" * 33, "invalid trainee name"),
    (" ".join(f"t{n}" for n in range(61)), "at most 60"),
])
def test_trainee_names_refused(text, error):
    with pytest.raises(LabError, match=error):
        batch.trainee_names(text)


def test_counted_names_and_labs():
    assert batch.counted_names(3) == ["trainee-01", "trainee-02", "trainee-03"]
    assert batch.seat_labs("cls-ab12", 2, 5) == ["cls-ab12-5", "cls-ab12-6"]
    with pytest.raises(LabError, match="once numbered"):
        batch.seat_labs("x" * 31, 10)
    with pytest.raises(LabError):
        batch.counted_names(0)


def test_token_lookup_compares_every_token():
    holders = [(auth.new_token(), name) for name in ("a", "b", "c")]
    assert auth.find(holders[1][0], holders) == "b"
    assert auth.find(holders[1][0][:-1], holders) is None
    assert auth.find(None, holders) is None
    assert len(holders[0][0]) >= 43  # 256 bits


def test_csrf_tokens_differ_by_session_and_server_run():
    one, two = auth.Keys(), auth.Keys()
    assert one.csrf("t1") != one.csrf("t2")
    assert one.csrf("t1") != two.csrf("t1")
    assert re.fullmatch(r"[0-9a-f]{64}", one.csrf("t1"))


def _attempt() -> Attempt:
    attempt = Attempt(scenario="s", lab="l", seed=1, trainee="alice", started=1000.0,
                      ticket="t", time_limit=20,
                      faults=[FaultKey("smtp-service-down", {}, "smtp-service-down", "mx")],
                      red_herrings=[FaultKey("fw-icmp-blocked", {}, "fw-icmp-blocked", "fw")])
    attempt.record_command("ext-ws", ["dig", "+short", "mail.example.net"], t=1010.0)
    attempt.record_command("mx", ["ss", "-ltn"], t=1020.0, line="ss -ltn | grep 25")
    attempt.take_hint(0, 5, t=1030.0)
    return attempt


@pytest.mark.parametrize("cause,node,grade", [
    ("smtp-service-down", "mx", "right"),
    ("smtp-service-down", "fw", "partial"),
    ("dns-wrong-address", "mx", "wrong"),
    ("fw-icmp-blocked", "fw", "red herring"),
])
def test_submission_grades(cause, node, grade):
    attempt = _attempt()
    sub = attempt.submit(cause, node, t=1040.0)
    assert submission_grade(attempt, sub, Accept()) == grade


def test_live_view():
    attempt = _attempt()
    attempt.submit("smtp-service-down", "mx", t=1040.0)
    view = live_view(attempt, Accept(), "Mail is down", scored=False, now=1100.0)
    assert view["seconds_used"] == 100.0 and view["command_count"] == 2
    assert view["commands"][0] == {"t": 10.0, "node": "ext-ws",
                                   "line": "dig +short mail.example.net"}
    assert view["commands"][1]["line"] == "ss -ltn | grep 25"  # as typed
    assert view["hints"] == [{"t": 30.0, "index": 1, "cost": 5}]
    assert view["submissions"][0]["grade"] == "right" and view["score"] is None
    assert "commands" not in live_view(attempt, Accept(), "x", False, detail=False)


def test_export_csv():
    alice = Trainee("alice", "cls-1", 7, lab_state="up", attempt="scored",
                    live={"started": 0.0, "seconds_used": 90.0, "command_count": 4,
                          "hints": [{}], "submissions": [{"grade": "right"},
                                                         {"grade": "wrong"}]},
                    score={"total": 71, "max": 100})
    room = Classroom("mail-server-down", "Mail is down", Path("x.yaml"),
                     {"alice": alice, "bob": Trainee("bob", "cls-2", 8)})
    rows = list(csv.DictReader(io.StringIO(room.export_csv())))
    assert list(rows[0]) == list(EXPORT_FIELDS)
    assert rows[0]["trainee"] == "alice"
    assert (rows[0]["commands"], rows[0]["right"], rows[0]["wrong"], rows[0]["score"],
            rows[0]["minutes_used"]) == ("4", "1", "1", "71", "1.5")
    assert rows[1]["lab_state"] == "queued" and rows[1]["score"] == ""
    assert "token" not in room.export_csv() and alice.token not in room.export_csv()


@pytest.mark.parametrize("given,size", [
    ((30, 100), (30, 100)), (("40", "120"), (40, 120)), ((0, 0), (2, 2)),
    ((10**6, 10**6), (500, 1000)), (("x", None), (24, 80)),
])
def test_terminal_size_is_clamped(given, size):
    assert clamp_size(*given) == size


@pytest.mark.parametrize("text,ok", [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:0", ("::1", 0)),
    ("localhost:80", None), ("127.0.0.1", None), ("127.0.0.1:99999", None),
])
def test_listen_address(text, ok):
    if ok is None:
        with pytest.raises(LabError):
            parse_listen(text)
    else:
        assert parse_listen(text) == ok


def test_progress_lines_without_a_terminal():
    out = io.StringIO()
    with Progress(2, "labs", stream=out) as p:
        p.begin("a", "start a")
        p.done("a", lambda n: f"[{n}/2] a up")
        p.done("b", "b failed")
    assert out.getvalue() == "start a\n[1/2] a up\nb failed\n"


def test_progress_bar_on_a_terminal():
    out = io.StringIO()
    with Progress(2, "starting labs", stream=out, force_terminal=True) as p:
        p.begin("lab-1")
        p.done("lab-1", lambda n: f"[{n}/2] lab-1 up")
        p.begin("lab-2")
        p.done("lab-2", "[2/2] lab-2 up")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert "[1/2] lab-1 up" in text and "[2/2] lab-2 up" in text
    assert "starting labs" in text and "2/2" in text
