"""A class in a real browser: `lab serve` on loopback, Debian's Chromium driven by
Playwright, two trainees in labs of their own.

The instructor starts a class of two from the dashboard; trainee A opens her link, types
`dig +short mail.example.net` in the ext-ws terminal and sees the answer, takes a hint,
submits (answered "recorded" only), finishes and sees the report with the faulty node
marked; the dashboard, never reloaded, shows her commands, grades and score. Trainee B is
the attacker: his token opens neither A's terminal nor her pages, his requests from
another site are refused, his own terminal is sealed in its node and cannot ask for the
graded live view. The class is ended (open attempts scored, labs down), and a server
stopped by SIGTERM or Ctrl-C takes every lab it started down. Screenshots of the trainee
page (also in a narrower window), the dashboard, the report and the printable links are
saved in the test's temporary folder (classroom-screenshots*).
"""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LAB_CMD, PROJECT_ROOT, SESSION, STATE_ROOT, run_lab
from websockets.exceptions import InvalidStatus

from lab.web.client import Session, read_until

pytestmark = [pytest.mark.root, pytest.mark.slow]

SCENARIO, FAULTY = "mail-server-down", "mx"
ALICE, BOB = f"alice-{SESSION}", f"bob-{SESSION}"
RESULTS = Path(os.environ.get("LAB_RESULTS", "/var/lib/lab/results"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
FOREIGN = "http://evil.example.com"
UP_TIMEOUT = 180_000  # ms: two labs on a busy 2-core machine


class Served:
    """`lab serve` in a process of its own, on a free loopback port."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.proc = subprocess.Popen(
            [*LAB_CMD, "serve", "--listen", "127.0.0.1:0", "--lab-prefix", prefix],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=PROJECT_ROOT)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.link = self._wait_for(r"instructor link: (\S+)").group(1)
        self.base = self.link.split("/i/")[0]

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def _wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, "".join(self.output)
                continue
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"{pattern!r} not in: {''.join(self.output)}")

    def stop(self, signum: int = signal.SIGTERM) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            self.proc.wait(120)
        time.sleep(0.1)  # the reader's last lines
        return "".join(self.output)

    def labs(self) -> list[str]:
        return sorted(p.name for p in STATE_ROOT.glob(f"{self.prefix}-*"))


def _stop_and_clean(served: Served, trainees: list[str]) -> tuple[str, list[str]]:
    """Stop the server; the labs it left (none, if it keeps its promise) are taken down
    here and returned, and the trainees' records removed."""
    out = served.stop()
    left = served.labs()
    for lab in left:
        run_lab("down", "--lab", lab)
    for name in trainees:
        shutil.rmtree(RESULTS / name, ignore_errors=True)
    return out, left


@pytest.fixture(scope="module")
def served(require_root) -> Iterator[Served]:
    srv = Served(f"wbt{SESSION}")
    yield srv
    out, left = _stop_and_clean(srv, [ALICE, BOB, f"cal-{SESSION}"])
    assert srv.proc.returncode == 0, out
    assert not left, f"labs left behind by the stopped server: {left}\n{out}"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=shutil.which("chromium")
                                      or "/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("classroom-screenshots")


def new_page(browser, width: int = 1400, height: int = 900):
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    return page


@pytest.fixture(scope="module")
def dashboard(served, browser):
    """The instructor's dashboard with a class of two started from its form; it is never
    reloaded (``window.notReloaded`` would be gone)."""
    from playwright.sync_api import expect

    page = new_page(browser)
    page.goto(served.link)
    page.select_option("select[name=scenario]", SCENARIO)
    page.fill("textarea[name=names]", f"{ALICE}, {BOB}")
    page.click("#class-form button[type=submit]")
    expect(page.locator("#class-progress")).to_contain_text("labs up 2 of 2",
                                                            timeout=UP_TIMEOUT)
    page.evaluate("window.notReloaded = true")
    yield page
    page.context.close()


def row(dashboard, name: str):
    return dashboard.locator(f'tr[data-trainee="{name}"]')


@pytest.fixture(scope="module")
def links(dashboard) -> dict[str, str]:
    return {name: row(dashboard, name).locator("input.link").input_value()
            for name in (ALICE, BOB)}


@pytest.fixture(scope="module")
def alice(browser, links):
    page = new_page(browser)
    page.goto(links[ALICE])
    yield page
    page.context.close()


@pytest.fixture(scope="module")
def bob(links) -> Session:
    """Trainee B, scripting his requests as an attacker would (his own cookie)."""
    session = Session(links[BOB])
    session.login(links[BOB])
    assert session.home == f"/trainee/{BOB}"
    return session


def terminal_text(page, node: str) -> str:
    return page.locator(f'.term[data-node="{node}"] .xterm-rows').inner_text()


def test_the_dashboard_lists_each_trainee_with_a_link(served, links):
    assert links[ALICE] != links[BOB]
    for link in links.values():
        assert re.fullmatch(re.escape(served.base) + r"/t/[A-Za-z0-9_-]{43}", link)


def test_the_printable_links_are_the_dashboards(dashboard, links, shots):
    page = dashboard.context.new_page()  # the instructor's cookie
    page.goto(dashboard.url.split("/instructor")[0] + "/instructor/links")
    rows = page.locator("table.links tbody tr")
    printed = {rows.nth(i).locator("td").first.inner_text():
               rows.nth(i).locator("code").inner_text() for i in range(rows.count())}
    assert printed == links
    page.screenshot(path=str(shots / "links.png"))
    page.close()


def test_a_command_in_the_ext_ws_terminal(alice, shots):
    from playwright.sync_api import expect

    alice.click('.tab[data-node="ext-ws"]')
    term = alice.locator('.term[data-node="ext-ws"] .xterm-rows')
    expect(term).to_contain_text(":ext-ws]", timeout=30_000)  # the node's prompt
    alice.keyboard.type("dig +short mail.example.net\n")
    expect(term).to_contain_text("203.0.113.25", timeout=30_000)
    alice.screenshot(path=str(shots / "trainee.png"))


def _shell_size(page, node: str, asked: int) -> tuple[int, int]:
    """What the node's shell reports as its terminal size (rows, cols), asked the
    ``asked``-th time in this terminal."""
    page.keyboard.type('echo "size=$(stty size)"\n')
    deadline = time.monotonic() + 30
    while len(found := re.findall(r"size=(\d+) (\d+)", terminal_text(page, node))) < asked:
        assert time.monotonic() < deadline, terminal_text(page, node)
        time.sleep(0.2)
    return int(found[-1][0]), int(found[-1][1])


def _xterm_size(page, node: str) -> tuple[int, int]:
    return tuple(page.evaluate(f"[terminals.get('{node}').term.rows, "
                               f"terminals.get('{node}').term.cols]"))


def test_the_terminal_follows_the_windows_size(alice, shots):
    """xterm.js fits the window, and the node's shell gets the same size."""
    wide = _xterm_size(alice, "ext-ws")
    assert _shell_size(alice, "ext-ws", 1) == wide
    alice.set_viewport_size({"width": 1000, "height": 700})
    try:
        deadline = time.monotonic() + 10
        while (narrow := _xterm_size(alice, "ext-ws")) == wide:
            assert time.monotonic() < deadline, "the terminal was not fitted to the window"
            time.sleep(0.1)
        assert narrow[0] < wide[0] and narrow[1] < wide[1]
        assert _shell_size(alice, "ext-ws", 2) == narrow
        alice.screenshot(path=str(shots / "trainee-narrow.png"))
    finally:
        alice.set_viewport_size({"width": 1400, "height": 900})


def test_a_hint(alice):
    from playwright.sync_api import expect

    alice.click("#hint-button")
    expect(alice.locator("#hints li")).to_contain_text("Is anything listening on port 25")
    expect(alice.locator("#hints-left")).to_have_text("0")


def test_a_submission_is_only_recorded(alice):
    from playwright.sync_api import expect

    alice.select_option("select[name=cause]", "smtp-service-down")
    alice.select_option("select[name=node]", FAULTY)
    alice.click("#submit-form button[type=submit]")
    answer = alice.locator("#submissions li")
    expect(answer).to_have_text(f"smtp-service-down on {FAULTY}: recorded")
    expect(answer).to_have_class("answer recorded")  # neither right nor wrong shows


def test_the_dashboard_follows_without_reloading(dashboard, shots):
    from playwright.sync_api import expect

    mine = row(dashboard, ALICE)
    expect(mine.locator("td.commands")).not_to_have_text("0", timeout=15_000)
    expect(mine.locator(".grade.right")).to_have_text(f"\u2714 smtp-service-down on {FAULTY}")
    mine.locator("td.name").click()
    timeline = dashboard.locator("#detail-commands")
    expect(timeline).to_contain_text("dig +short mail.example.net", timeout=10_000)
    expect(timeline.locator("tr").first).to_contain_text("ext-ws")
    expect(dashboard.locator("#detail-hints li")).to_have_count(1)
    assert dashboard.evaluate("window.notReloaded") is True
    dashboard.screenshot(path=str(shots / "dashboard-working.png"), full_page=True)


def test_finishing_shows_the_report_and_the_faulty_node(alice, shots):
    from playwright.sync_api import expect

    alice.click("#finish-button")
    expect(alice.locator("#report")).to_be_visible(timeout=120_000)
    expect(alice.locator("#score")).to_contain_text("/ 100")
    faulty = alice.locator("#topology g.node:has(rect.faulty)")
    expect(faulty).to_have_count(1)
    assert faulty.get_attribute("data-node") == FAULTY
    report = alice.frame_locator("#report-frame")
    expect(report.locator("h1")).to_contain_text(f"Score: {SCENARIO} ({ALICE})")
    expect(report.locator("td.right").first).to_have_text("right")
    expect(alice.locator("#terminals")).to_be_hidden()
    alice.screenshot(path=str(shots / "report.png"))


def test_the_dashboard_shows_the_score_without_reloading(dashboard, shots):
    from playwright.sync_api import expect

    mine = row(dashboard, ALICE)
    expect(mine.locator("td.score")).to_contain_text("/ 100", timeout=15_000)
    expect(mine.locator("td.state")).to_have_text("scored")
    expect(dashboard.locator("#detail-report")).to_be_visible(timeout=10_000)
    expect(dashboard.frame_locator("#detail-report-frame").locator("h1")).to_contain_text(ALICE)
    assert dashboard.evaluate("window.notReloaded") is True
    dashboard.screenshot(path=str(shots / "dashboard-scored.png"), full_page=True)


# --- trainee B, the attacker ----------------------------------------------------------

@pytest.mark.parametrize("path", ["", "/state", "/report", "/topology.svg"])
def test_b_cannot_open_a_page_of_a(bob, path):
    status, body, _ = bob.get(f"/trainee/{ALICE}{path}")
    assert status == 403 and "403 Forbidden" in body
    assert bob.get(f"/trainee/{BOB}{path}")[0] in (200, 404)  # his own: open (404: no report)


@pytest.mark.parametrize("action", ["hint", "submit", "finish"])
def test_b_cannot_act_for_a(bob, action):
    status, body = bob.post(f"/trainee/{ALICE}/{action}",
                            {"cause": "smtp-service-down", "node": FAULTY})
    assert status == 403 and "403 Forbidden" in body


def test_b_cannot_open_a_terminal_of_a(bob):
    with pytest.raises(InvalidStatus) as refused:
        bob.terminal(ALICE, "ext-ws")
    assert refused.value.response.status_code == 403


def test_b_in_the_browser_cannot_open_a_report_of_a(browser, links):
    page = new_page(browser)
    page.goto(links[BOB])
    response = page.goto(page.url.replace(f"/trainee/{BOB}", f"/trainee/{ALICE}/report"))
    assert response.status == 403 and "403 Forbidden" in page.content()
    opened = page.evaluate("""(url) => new Promise((done) => {
        const ws = new WebSocket(url);
        ws.onopen = () => done("open"); ws.onerror = () => done("refused");
    })""", links[BOB].split("/t/")[0].replace("http", "ws") + f"/trainee/{ALICE}/term/ext-ws")
    assert opened == "refused"
    page.context.close()


def test_the_page_shows_the_picture_lab_topology_draws(bob, tmp_path):
    drawn = tmp_path / "mail-dmz.svg"
    p = run_lab("topology", "mail-dmz", "--svg", str(drawn))
    assert p.returncode == 0, p.stderr
    status, svg, _ = bob.get(f"/trainee/{BOB}/topology.svg")
    assert status == 200 and svg == drawn.read_text()
    assert 'class="box faulty"' not in svg  # nothing marked before the attempt is scored


@pytest.mark.parametrize("path", ["/instructor", "/instructor/events", "/instructor/export.csv",
                                  "/instructor/export.json", "/instructor/links",
                                  "/instructor/trainee/{alice}",
                                  "/instructor/trainee/{alice}/report"])
def test_instructor_pages_refuse_anonymous_and_trainees(served, bob, path):
    path = path.format(alice=ALICE)  # ids stay the same in every xdist worker
    assert Session(served.base).get(path)[0] == 403
    assert bob.get(path)[0] == 403


def test_anonymous_browser_gets_a_plain_403(browser, served):
    page = new_page(browser)
    response = page.goto(served.base + "/instructor")
    assert response.status == 403
    assert page.locator("h1").inner_text() == "403 Forbidden"
    page.context.close()


@pytest.mark.parametrize("csrf,origin", [("", ""), ("0" * 64, ""), (None, FOREIGN),
                                         (None, None)],
                         ids=["no-csrf", "wrong-csrf", "foreign-origin", "no-origin"])
def test_b_cross_site_requests_are_refused(bob, served, csrf, origin):
    status, body = bob.post(f"/trainee/{BOB}/hint", csrf=csrf, origin=origin)
    assert status == 403 and "403 Forbidden" in body
    instructor = Session(served.link)
    instructor.login(served.link)
    mine = next(t for t in instructor.snapshot()["trainees"] if t["trainee"] == BOB)
    assert mine["hints"] == 0  # nothing happened


@pytest.mark.parametrize("origin", [FOREIGN, None, "http://127.0.0.1:1"],
                         ids=["foreign", "none", "other-port"])
def test_a_websocket_from_another_origin_is_refused(bob, origin):
    with pytest.raises(InvalidStatus) as refused:
        bob.terminal(BOB, "ext-ws", origin=origin)
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("node", ["host", "..", "%2e%2e%2fetc", "fw%00"])
def test_no_terminal_outside_the_labs_nodes(bob, node):
    with pytest.raises(InvalidStatus):
        bob.terminal(BOB, node)


def test_bs_own_terminal_is_sealed_in_its_node(bob):
    """The positive control of the refusals above, and no host shell behind it."""
    with bob.terminal(BOB, "ext-ws", cols=200) as ws:
        read_until(ws, r":ext-ws\] ")
        ws.send(f'echo "name=$(hostname)"; test -e /var/lib/dpkg/status -o -e {RESULTS} '
                f'&& echo "host-fs=$((1))" || echo "node-only=$((1))"\r'.encode())
        seen = read_until(ws, r"(node-only|host-fs)=1[\s\S]*:ext-ws\] ")  # and the prompt
    assert "name=ext-ws" in seen and "node-only=1" in seen and "host-fs=1" not in seen


def test_b_cannot_get_the_graded_view_through_the_node(bob):
    code = ("import json,socket;s=socket.socket(socket.AF_UNIX,socket.SOCK_SEQPACKET);"
            "s.connect('/run/lab-node/lab.sock');"
            "s.send(json.dumps({'op':'live'}).encode());print(s.recv(65536).decode())")
    with bob.terminal(BOB, "ext-ws", cols=200) as ws:
        read_until(ws, r":ext-ws\] ")
        ws.send(f'python3 -c "{code}"\r'.encode())
        seen = read_until(ws, r'\{"ok": .*\}[\s\S]*:ext-ws\] ')
    reply = json.loads(re.search(r'\{"ok": .*\}', seen).group(0))
    assert reply["ok"] is False and "not something a trainee can ask" in reply["error"]


# --- the instructor's exports and the end of the class ------------------------------------

def test_exports(served):
    import csv
    import io

    instructor = Session(served.link)
    instructor.login(served.link)
    status, text, _ = instructor.get("/instructor/export.csv")
    rows = {r["trainee"]: r for r in csv.DictReader(io.StringIO(text))}
    assert status == 200 and set(rows) == {ALICE, BOB}
    assert rows[ALICE]["attempt"] == "scored" and int(rows[ALICE]["score"]) > 0
    assert int(rows[ALICE]["commands"]) >= 1 and rows[ALICE]["right"] == "1"
    assert int(rows[BOB]["commands"]) == 2  # each line typed in his terminals
    status, text, _ = instructor.get("/instructor/export.json")
    data = {t["trainee"]: t for t in json.loads(text)["trainees"]}
    assert any(c["line"] == "dig +short mail.example.net" and c["node"] == "ext-ws"
               for c in data[ALICE]["commands"])
    assert data[ALICE]["graded"][0]["grade"] == "right"
    assert data[ALICE]["report"]["verdicts"][0]["node"] == FAULTY


def test_ending_the_class_scores_and_takes_the_labs_down(dashboard, served, bob, shots):
    from playwright.sync_api import expect

    dashboard.click("#end-class")
    try:
        expect(dashboard.locator("#class-phase")).to_have_text("ended", timeout=180_000)
    except AssertionError as e:
        raise AssertionError(f"{e}\nserver output:\n{''.join(served.output)}") from None
    expect(row(dashboard, BOB).locator("td.score")).to_contain_text("/ 100")
    assert dashboard.evaluate("window.notReloaded") is True
    assert served.labs() == []
    assert any(RESULTS.glob(f"{BOB}/*.json")) and any(RESULTS.glob(f"{ALICE}/*.json"))
    with pytest.raises(InvalidStatus):
        bob.terminal(BOB, "ext-ws")
    dashboard.screenshot(path=str(shots / "dashboard-ended.png"), full_page=True)


def test_a_link_of_an_earlier_class_is_refused(served, bob, links):
    """A new class replaces the ended one: the old trainee links and cookies expire."""
    instructor = Session(served.link)
    instructor.login(served.link)
    instructor.post_ok("/instructor/class", {"scenario": SCENARIO, "names": f"cal-{SESSION}"})
    status, body, _ = Session(links[BOB]).get(links[BOB])
    assert status == 403 and "403 Forbidden" in body
    assert bob.get(f"/trainee/{BOB}")[0] == 403
    assert bob.get(f"/trainee/{BOB}/report")[0] == 403


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_server_takes_every_lab_down(require_root, signum):
    name = f"stop-{SESSION}"
    srv = Served(f"wbs{SESSION}")
    try:
        instructor = Session(srv.link)
        instructor.login(srv.link)
        instructor.post_ok("/instructor/class", {"scenario": SCENARIO, "names": name})
        deadline = time.monotonic() + UP_TIMEOUT / 1000
        while instructor.snapshot()["progress"]["up"] < 1:
            assert time.monotonic() < deadline, "the lab did not come up"
            time.sleep(0.5)
        assert srv.labs() == [f"wbs{SESSION}-1"]
        out = srv.stop(signum)
    finally:
        _, left = _stop_and_clean(srv, [name])
    assert f"1 labs taken down: wbs{SESSION}-1" in out and srv.proc.returncode == 0
    assert left == []
