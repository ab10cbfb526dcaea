"""Rendering matrix outcomes and playbook runs: the confusion matrix, per-playbook accuracy,
JUnit XML, and `lab playbook explain`'s step by step view. Pure functions returning text."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from xml.etree import ElementTree as ET

from lab.playbooks.matrix import Outcome
from lab.playbooks.runner import PlaybookResult, StepResult
from lab.scoring.causes import CAUSES

_ORDER = {c.id: i for i, c in enumerate(CAUSES)}
NONE = "none"
CORNER = "injected \\ concluded"
ERROR = "error"


def _row(o: Outcome) -> str:
    if not o.injected:
        return "?"
    return " + ".join(sorted({c for c, _ in o.injected}, key=lambda c: _ORDER.get(c, 99)))


def _col(o: Outcome) -> str:
    if o.verdict == "error":
        return ERROR
    return o.concluded[0] if o.concluded else NONE


def render_matrix(outcomes: list[Outcome]) -> str:
    """Injected cause (rows) against concluded cause (columns, numbered as the rows; the
    legend names them), plus "none" (no conclusion) and "error" columns. A cell is a run
    count; ``*`` marks a run whose conclusion named the injected cause."""
    rows = sorted({_row(o) for o in outcomes}, key=lambda r: (_ORDER.get(r.split(" + ")[0], 99), r))
    cols = sorted({_col(o) for o in outcomes} - {NONE, ERROR}, key=lambda c: _ORDER.get(c, 99))
    labels = {c: str(i + 1) for i, c in enumerate(cols)}
    cols += [NONE] + ([ERROR] if any(o.verdict == "error" for o in outcomes) else [])
    cells: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for o in outcomes:
        cells[(_row(o), _col(o))]["right" if o.passed else "other"] += 1
    width = max([len(r) for r in rows] + [len(CORNER)])
    head = [labels.get(c, c) for c in cols]
    lines = [f"{CORNER:<{width}} " + " ".join(f"{h:>5}" for h in head)]
    for r in rows:
        out = []
        for c in cols:
            n = cells[(r, c)]
            text = "." if not (n["right"] + n["other"]) else str(n["right"] + n["other"])
            out.append(f"{text + ('*' if n['right'] else ''):>5}")
        lines.append(f"{r:<{width}} " + " ".join(out))
    legend = [f"  {labels[c]:>2} = {c}" for c in labels]
    return "\n".join(lines + (["columns:"] + legend if legend else [])) + "\n"


def render_accuracy(outcomes: list[Outcome]) -> str:
    """Per playbook: runs, right diagnoses, wrong ones, no conclusion, errors, and the
    expected diagnoses (scenarios' ``expect_playbooks``) hit."""
    lines = [(f"{'PLAYBOOK':<16} {'RUNS':>4} {'RIGHT':>5} {'PART':>4} {'WRONG':>5} "
              f"{'NONE':>4} {'ERR':>3}  EXPECTED HIT   ACCURACY")]
    for name in sorted({o.playbook for o in outcomes}):
        mine = [o for o in outcomes if o.playbook == name]
        n = Counter(o.verdict for o in mine)
        exp = [o for o in mine if o.expected]
        hit = sum(o.passed for o in exp)
        concluded = n["right"] + n["partial"] + n["wrong"]
        acc = f"{100 * n['right'] / len(mine):.0f}% of runs"
        if concluded:
            acc += f", {100 * n['right'] / concluded:.0f}% of conclusions"
        lines.append(f"{name:<16} {len(mine):>4} {n['right']:>5} {n['partial']:>4} "
                      f"{n['wrong']:>5} {n['none']:>4} {n['error']:>3}  "
                      f"{f'{hit}/{len(exp)}':<13}  {acc}")
    return "\n".join(lines) + "\n"


def render_misses(outcomes: list[Outcome]) -> str:
    """The runs that make the command fail, and any that erred."""
    lines = []
    for o in outcomes:
        if not (o.missed or o.verdict == "error"):
            continue
        injected = ", ".join(f"{c} on {n}" for c, n in o.injected) or "?"
        got = {"none": "no conclusion", "error": f"error: {o.error.splitlines()[0] if o.error else ''}"
               }.get(o.verdict, f"{o.verdict}: {o.concluded[0]} on {o.concluded[1]}"
                     if o.concluded else o.verdict)
        tag = "MISS " if o.missed else "ERROR"
        lines.append(f"{tag} {o.playbook} x {o.scenario} (seed {o.seed}): injected {injected}; "
                     f"{got}")
    return "\n".join(lines) + ("\n" if lines else "")


def progress_line(o: Outcome, index: int, total: int) -> str:
    got = {"none": "no conclusion", "error": "ERROR"}.get(o.verdict, o.verdict)
    concl = f" ({o.concluded[0]} on {o.concluded[1]})" if o.concluded else ""
    return (f"[{index}/{total}] {o.playbook} x {o.scenario} seed {o.seed}: {got}{concl}"
            f" {o.seconds:.1f} s")


# --- evidence -----------------------------------------------------------------------------


def _trim(text: str, lines: int = 12, width: int = 160) -> list[str]:
    rows = [r[:width] for r in text.rstrip("\n").splitlines()]
    if len(rows) > lines:
        rows = rows[:lines] + [f"... ({len(rows) - lines} more lines)"]
    return rows


def render_step(step: StepResult, full: bool = True) -> str:
    if step.skipped:
        return f"- {step.id} [{step.node}] skipped: {step.skipped}"
    lines = [f"- {step.id} [{step.node}] {step.action}, rc {step.rc}, {step.seconds:.2f} s"]
    for argv in step.commands:
        lines.append("    $ " + " ".join(argv))
    if full:
        for stream, text in (("out", step.stdout), ("err", step.stderr)):
            if text.strip():
                lines += [f"    {stream}| {r}" for r in _trim(text)]
    facts = ", ".join(f"{k}={v!r}" for k, v in step.facts.items())
    lines.append(f"    facts: {facts}")
    return "\n".join(lines)


def render_conclusion(result: PlaybookResult) -> str:
    c = result.conclusion
    if c is None:
        return "conclusion: NO CONCLUSION (no condition matched; nothing was submitted)"
    text = f"conclusion #{c['index'] + 1}: {c['cause']} on {c['node']}"
    if c.get("because"):
        text += f" ({c['because']})"
    if result.submission:
        text += f"; submitted: {result.submission['verdict']}"
    return text


def render_result(result: PlaybookResult) -> str:
    """`lab playbook explain`: every step, its command, output, facts or skip reason,
    the conclusion and the score."""
    parts = [f"playbook {result.playbook} in lab {result.lab} ({result.seconds:.1f} s)", ""]
    parts += [render_step(s) for s in result.steps]
    parts += ["", render_conclusion(result)]
    if result.score_text:
        parts += ["", result.score_text.rstrip()]
    return "\n".join(parts) + "\n"


def render_junit(outcomes: list[Outcome]) -> str:
    """One testsuite per playbook, one testcase per (playbook, scenario, seed); the
    evidence in system-out; a failure for a missed expected diagnosis, an error for a
    run that did not finish."""
    root = ET.Element("testsuites", name="playbooks")
    for name in sorted({o.playbook for o in outcomes}):
        mine = [o for o in outcomes if o.playbook == name]
        suite = ET.SubElement(root, "testsuite", name=name, tests=str(len(mine)),
                              failures=str(sum(o.missed and o.verdict != "error" for o in mine)),
                              errors=str(sum(o.verdict == "error" for o in mine)),
                              time=f"{sum(o.seconds for o in mine):.3f}")
        for o in mine:
            case = ET.SubElement(suite, "testcase", classname=f"playbook.{name}",
                                 name=f"{o.scenario}[seed={o.seed}]", time=f"{o.seconds:.3f}")
            injected = ", ".join(f"{c} on {n}" for c, n in o.injected) or "?"
            if o.verdict == "error":
                ET.SubElement(case, "error", message=o.error.splitlines()[0] if o.error else
                              "error").text = o.error
            elif o.missed:
                got = (f"{o.concluded[0]} on {o.concluded[1]}" if o.concluded
                       else "no conclusion")
                ET.SubElement(case, "failure", message=f"expected diagnosis missed: injected "
                              f"{injected}; concluded {got}")
            evidence = [f"expected: {o.expected}", f"injected: {injected}",
                        f"verdict: {o.verdict}"]
            if o.result is not None:
                evidence += [render_step(s) for s in o.result.steps]
                evidence += [f"facts: {json.dumps(o.result.facts, sort_keys=True)}",
                             render_conclusion(o.result)]
            ET.SubElement(case, "system-out").text = "\n".join(evidence)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
