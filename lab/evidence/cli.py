"""`lab evidence`: what an SRE attaches to a postmortem, from a running lab.

The supervisor captures every segment and copies what the nodes hold (lab/evidence/
collect.py); this side makes the directory (root only, mode 0700, empty), adds `lab
status` and writes ``index.md``: what is in the bundle and a timeline built from the logs.
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.evidence import MAX_CAPTURE, MAX_PACKETS

if TYPE_CHECKING:
    from lab.evidence.timeline import Event

DEFAULT_CAPTURE = 5.0
TIMELINE_LIMIT = 400  # the newest events in index.md (the logs themselves are all there)


def add_parsers(sub, add_lab) -> None:
    p = sub.add_parser("evidence", help="write a lab's evidence (captures, logs, queues, "
                                        "ruleset, zones, status) for a postmortem")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="a new (or empty) directory for the bundle")
    p.add_argument("--capture", type=float, default=DEFAULT_CAPTURE, metavar="SECONDS",
                   help=f"capture every segment this long (default {DEFAULT_CAPTURE:g}, at "
                        f"most {MAX_CAPTURE:g}; 0: no capture)")
    add_lab(p)


def _out_dir(text: str) -> Path:
    path = Path(text).resolve()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise LabError(f"{path} exists and is not an empty directory",
                       hint="give a new directory: the bundle never overwrites anything")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)
    except OSError as e:
        raise LabError(f"cannot make {path}: {e.strerror or e}") from None
    return path


def cmd_evidence(args: argparse.Namespace) -> int:
    from lab.cli import render_status
    from lab.engine import control, lifecycle

    lifecycle.require_root()
    if not 0 <= args.capture <= MAX_CAPTURE:
        raise LabError(f"--capture {args.capture:g}: between 0 and {MAX_CAPTURE:g} seconds")
    lab = lifecycle.pick_lab(args.lab)
    out = _out_dir(args.out)
    if args.capture:
        print(f"capturing every segment of lab {lab} for {args.capture:g} s ...",
              file=sys.stderr, flush=True)
    got = control.request(lab, "evidence", timeout=args.capture + 60, out=str(out),
                          capture=args.capture)
    status = control.request(lab, "status")
    (out / "status.txt").write_text(render_status(status) + "\n")
    files = sorted([*got["files"], "status.txt"])
    (out / "index.md").write_text(render_index(lab, status, got, files, out))
    print(f"wrote {out}: {len(files) + 1} files ({', '.join(got['segments']) or 'no'} "
          "captures); start with index.md")
    return 0


def _logs(out: Path, files: list[str]) -> list[tuple[str, str, str]]:
    """(node, log as the node sees it, text) of every log in the bundle."""
    found = []
    for rel in files:
        parts = rel.split("/")
        if len(parts) >= 4 and parts[0] == "nodes" and parts[2] == "log":
            text = (out / rel).read_text(errors="replace")
            found.append((parts[1], "/var/log/" + "/".join(parts[3:]), text))
    return found


def render_index(lab: str, status: dict[str, Any], got: dict[str, Any], files: list[str],
                 out: Path) -> str:
    """index.md: what the bundle is, what it holds, and the timeline from the logs."""
    from lab.evidence.timeline import timeline

    now = datetime.now()
    events = timeline(_logs(out, files), now.year, TIMELINE_LIMIT)
    captured = ", ".join(got["segments"]) or "none"
    lines = [f"# Evidence from lab {lab}", "",
             f"- topology: {status.get('topology')} ({status.get('source')})",
             f"- collected: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
             f"- capture: {got['capture']:g} s on every segment's bridge, at most "
             + f"{MAX_PACKETS} packets each ({captured})", "",
             "## Files", "", "| file | bytes |", "| --- | --- |"]
    lines += [f"| [{rel}]({rel}) | {(out / rel).stat().st_size} |" for rel in files]
    lines += ["", "## Timeline", "",
              f"Every timed line of the nodes' logs, oldest first (the newest {TIMELINE_LIMIT}).",
              "", "| time | node | log | line |", "| --- | --- | --- | --- |"]
    lines += [_row(e) for e in events]
    if not events:
        lines.append("| | | | (no log lines yet) |")
    return "\n".join(lines) + "\n"


def _row(e: Event) -> str:
    text = e.text.replace("|", "\\|")
    return f"| {e.when:%Y-%m-%d %H:%M:%S} | {e.node} | {e.log} | `{text}` |"


COMMANDS = {"evidence": cmd_evidence}
