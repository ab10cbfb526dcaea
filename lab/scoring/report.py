"""Rendering a Report: terminal text, a JSON-ready dict, a self-contained HTML page.

Pure functions returning strings or dicts; the CLI decides where they go. The HTML page
has no external assets (inline style only) and escapes every value it shows. An item's
details (the rule text behind a damage line, how a repair was checked) are folded below
it: indented lines in the text, a <details> element in HTML, fields in JSON.
"""
from __future__ import annotations

from dataclasses import asdict
from html import escape
from typing import Any

from lab.errors import LabError
from lab.scoring.attempt import Submission
from lab.scoring.items import Item
from lab.scoring.score import FaultVerdict, Report, mmss

CATEGORY_ORDER = ["diagnosis", "submissions", "fix", "investigation", "hints", "damage",
                  "time", "floor"]


def _submitted(v: FaultVerdict) -> str:
    if v.submission is None:
        return "-"
    return f"{v.submission.cause} on {v.submission.node}"


def _fault_label(v: FaultVerdict) -> str:
    params = ", ".join(f"{k}={v.params[k]}" for k in sorted(v.params))
    return f"{v.fault}({params})" if params else v.fault


def _ordered(report: Report) -> list[tuple[str, list[Any]]]:
    out = []
    for cat in CATEGORY_ORDER + sorted({i.category for i in report.items} - set(CATEGORY_ORDER)):
        items = [i for i in report.items if i.category == cat]
        if items:
            out.append((cat, items))
    return out


def _time_line(report: Report) -> str:
    late = " (LATE)" if report.late else ""
    return f"Time {mmss(report.elapsed)} of {mmss(report.time_limit * 60)}{late}"


def render_text(report: Report) -> str:
    lines = [
        f"Scenario {report.scenario}  lab {report.lab}  trainee {report.trainee}  seed {report.seed}",
        _time_line(report),
        f"Score {report.total} / {report.max_points}",
        "",
        "Faults:",
    ]
    for n, v in enumerate(report.verdicts, 1):
        lines.append(f"  {n}. {v.verdict:<8} {v.points:+4d}  {v.cause} on {v.node}  "
                     f"[{_fault_label(v)}]")
        lines.append(f"     submitted: {_submitted(v)}: {v.why}" + (" (LATE)" if v.late else ""))
    for cat, items in _ordered(report):
        lines += ["", f"{cat.capitalize()}:"]
        for i in items:
            lines.append(f"  {i.points:+4d}  {i.reason}")
            lines += [f"          {d}" for d in i.details]
    return "\n".join(lines) + "\n"


def _item_json(i: Item) -> dict[str, Any]:
    out: dict[str, Any] = {"points": i.points, "reason": i.reason, "category": i.category}
    if i.details:
        out["details"] = list(i.details)
    out.update({k: v for k, v in i.data.items() if k not in out})
    return out


def to_json(report: Report) -> dict[str, Any]:
    return {
        "scenario": report.scenario,
        "lab": report.lab,
        "trainee": report.trainee,
        "seed": report.seed,
        "elapsed": round(report.elapsed, 3),
        "time_limit": report.time_limit,
        "late": report.late,
        "total": report.total,
        "max": report.max_points,
        "verdicts": [
            {"fault": v.fault, "params": v.params, "cause": v.cause, "node": v.node,
             "verdict": v.verdict, "why": v.why, "points": v.points, "late": v.late,
             "submission": asdict(v.submission) if v.submission else None}
            for v in report.verdicts
        ],
        "items": [_item_json(i) for i in report.items],
    }


def from_json(data: dict[str, Any]) -> Report:
    """The Report that ``to_json`` made ``data`` from (an attempt record's score), so that a
    recorded attempt renders again exactly as it was scored. A LabError when ``data`` is
    not such a report."""
    try:
        verdicts = [FaultVerdict(v["fault"], v["params"], v["cause"], v["node"], v["verdict"],
                                 v["why"], _submission(v.get("submission")), v["points"],
                                 v.get("late", False))
                    for v in data["verdicts"]]
        items = [_item(i) for i in data["items"]]
        return Report(data["scenario"], data["lab"], data["trainee"], data["seed"],
                      data["elapsed"], data["time_limit"], data["max"], verdicts, items)
    except (KeyError, TypeError, AttributeError) as e:
        raise LabError(f"the record's score is not a report: missing {e}") from None


def _item(data: dict[str, Any]) -> Item:
    extra = {k: v for k, v in data.items()
             if k not in ("points", "reason", "category", "details")}
    return Item(data["points"], data["reason"], data["category"],
                tuple(data.get("details", ())), extra)


def _submission(data: dict[str, Any] | None) -> Submission | None:
    return None if data is None else Submission(**data)


STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
td, th { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
td.pts { text-align: right; font-family: monospace; }
.right { color: #176117; } .partial { color: #8a5a00; }
.wrong, .missing { color: #a11; }
.neg { color: #a11; } .pos { color: #176117; }
details pre { margin: 0.3em 0 0 1em; }
"""


def _item_cell(i: Item) -> str:
    if not i.details:
        return escape(i.reason)
    body = escape("\n".join(i.details))
    return f"<details><summary>{escape(i.reason)}</summary><pre>{body}</pre></details>"


def render_html(report: Report) -> str:
    e = escape
    rows = "".join(
        f'<tr><td>{n}</td><td class="{e(v.verdict)}">{e(v.verdict)}</td>'
        f"<td>{e(v.cause)}</td><td>{e(v.node)}</td><td>{e(_fault_label(v))}</td>"
        f"<td>{e(_submitted(v))}</td><td>{e(v.why)}{' (LATE)' if v.late else ''}</td></tr>"
        for n, v in enumerate(report.verdicts, 1)
    )
    sections = []
    for cat, items in _ordered(report):
        body = "".join(
            f'<tr><td class="pts {"neg" if i.points < 0 else "pos"}">{i.points:+d}</td>'
            f"<td>{_item_cell(i)}</td></tr>" for i in items
        )
        sections.append(f"<h2>{e(cat.capitalize())}</h2><table>{body}</table>")
    title = f"Score: {report.scenario} ({report.trainee})"
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n"
        f"<h1>{e(title)}</h1>\n"
        f"<p>Lab {e(report.lab)}, seed {report.seed}, {e(_time_line(report).lower())}</p>\n"
        f"<p><strong>Score {report.total} / {report.max_points}</strong></p>\n"
        "<h2>Faults</h2><table><tr><th>#</th><th>verdict</th><th>cause</th><th>node</th>"
        f"<th>fault</th><th>submitted</th><th>why</th></tr>{rows}</table>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )
