"""The trainee's commands: start, ticket, hint, causes, submit, score; and the listings."""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from lab import access
from lab.errors import Interrupted, LabError


def add_parsers(sub, add_lab) -> None:
    p = sub.add_parser("start",
                       help="start an exercise: bring a lab up, break it, print the ticket")
    p.add_argument("scenario", help="a name from scenarios/ or a path")
    p.add_argument("--seed", type=int, default=None, help="draw faults with this seed")
    p.add_argument("--fault", action="append", default=[], metavar="NAME[:KEY=VALUE,...]",
                   help="(instructors) apply this fault, with these parameters, instead of "
                        "drawing (repeatable)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--trainee", metavar="NAME",
                     default=os.environ.get("SUDO_USER") or getpass.getuser(),
                     help="the trainee the attempt is for: a user of this machine, or a name "
                          "only root works under (default: you)")
    who.add_argument("--trainees", metavar="NAME,NAME,...",
                     help="one attempt per trainee, in labs PREFIX-1...PREFIX-N (--lab "
                          "PREFIX, default the scenario's name)")
    p.add_argument("--parallel", type=int, metavar="N",
                   help="with --trainees: labs built at once (default 4)")
    add_lab(p)
    for name, text in (("ticket", "show the trouble ticket again"),
                       ("hint", "show the next hint (costs points)")):
        p = sub.add_parser(name, help=text)
        add_lab(p)
    p = sub.add_parser("causes", help="the list of causes a diagnosis is chosen from")
    add_lab(p)  # the same menu in every lab; accepted like every lab command's
    sub.add_parser("faults", help="the fault catalog (instructors)")
    sub.add_parser("scenarios", help="the scenarios")
    p = sub.add_parser("scenario", help="check scenario files without building anything")
    ssub = p.add_subparsers(dest="scenario_command", required=True, metavar="ACTION")
    v = ssub.add_parser("validate", help="check scenarios: faults and their parameters, the "
                                         "topology, its variant and the overrides")
    v.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="a name or a path")
    p = sub.add_parser("submit", help="submit a diagnosis: lab submit CAUSE --node NODE")
    p.add_argument("cause")
    p.add_argument("--node", required=True)
    add_lab(p)
    p = sub.add_parser("results", help="(instructors) the attempt records: score, time, hints")
    p.add_argument("--trainee", metavar="NAME")
    p.add_argument("--scenario", metavar="NAME")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    p.add_argument("--results", metavar="DIR", help="where the records are")
    p = sub.add_parser("report", help="(instructors) a recorded attempt's report again")
    p.add_argument("attempt", help="an attempt id (from `lab results`) or a record's path")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--html", metavar="FILE")
    p.add_argument("--results", metavar="DIR", help="where the records are")
    p = sub.add_parser("score", help="end the attempt: probes, score, report")
    p.add_argument("--json", action="store_true")
    p.add_argument("--html", metavar="FILE")
    p.add_argument("--results", metavar="DIR", help="where the attempt record goes")
    add_lab(p)


def cmd_start(args: argparse.Namespace) -> int:
    from lab.engine import lifecycle
    from lab.engine.attempt import checked, start_attempt

    if args.trainees is not None:
        from lab.class_cli import cmd_start_class

        return cmd_start_class(args)
    lifecycle.require_root()
    uid = trainee_uid(args.trainee)
    if uid is None:
        print(f"note: no Unix user '{args.trainee}': only root can work on this attempt",
              file=sys.stderr)
    path, scenario, forced = checked(args.scenario, args.fault)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(2), "big")
    lab = args.lab if args.lab is not None else scenario.name
    ticket = start_attempt(path, scenario, lab, seed, trainee=args.trainee, faults=forced,
                           uid=uid)
    try:
        # the seed is for the instructor's eyes only: with it and the scenario's pools the
        # draw can be computed (a trainee never runs `lab start`)
        print(f"lab {lab} is up; scenario {scenario.name} (seed {seed}); "
              f"trainee {args.trainee}\n")
        if uid not in (0, None) and not lifecycle.proc_hides_processes():
            print("warning: /proc is not mounted with hidepid=invisible: users of this "
                  "machine can see the lab's own commands while they run (see "
                  "docs/security.md)", file=sys.stderr)
        print(render_ticket(ticket))
    except KeyboardInterrupt:
        raise Interrupted(f"lab '{lab}' is up and the attempt has started",
                          hint="`lab ticket` shows the ticket") from None
    return 0


def trainee_uid(name: str) -> int | None:
    """The Unix user an attempt is bound to (they may work on it without root); None when
    the trainee's name is no user of this machine (the attempt is recorded under it)."""
    import pwd

    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def render_ticket(t: dict) -> str:
    lines = [f"TICKET: {t['title']}", "", t["ticket"].strip(), "",
             (f"time limit {t['time_limit']} min (used {t['minutes_used']} min); "
              f"{t['hints_left']} hints left (`lab hint`)"),
             ("investigate with `lab shell NODE` / `lab exec NODE -- CMD`; "
              "diagnose with `lab submit CAUSE --node NODE` (see `lab causes`); "
              "finish with `lab score`")]
    return "\n".join(lines)


def cmd_ticket(args: argparse.Namespace) -> int:
    print(render_ticket(access.ask(args.lab, "ticket")))
    return 0


def cmd_hint(args: argparse.Namespace) -> int:
    h = access.ask(args.lab, "hint")
    print(f"hint {h['index']}/{h['of']} (-{h['cost']} points): {h['text']}")
    return 0


def cmd_causes(args: argparse.Namespace) -> int:
    from lab.scoring.causes import render_causes

    print(render_causes())
    return 0


def cmd_faults(args: argparse.Namespace) -> int:
    from lab.faults import CATALOG
    from lab.model.roles import skeleton

    for name, fault in sorted(CATALOG.items()):
        params = ", ".join(fault.Params.model_fields)
        print(f"{name:<28} {fault.family:<9} {skeleton(fault.symptom)}"
              + (f"  [{params}]" if params else ""))
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    from lab.faults import CATALOG
    from lab.model.scenario import load_scenarios
    from lab.paths import SCENARIO_DIR
    from lab.scoring.causes import CAUSE_IDS

    for name, sc in sorted(load_scenarios(SCENARIO_DIR, set(CATALOG), CAUSE_IDS).items()):
        print(f"{name:<28} {sc.time_limit:>3} min  {sc.title}")
    return 0


def cmd_scenario(args: argparse.Namespace) -> int:
    from lab.engine.attempt import load

    for ref in args.scenarios:
        path, sc = load(ref)
        faults = sum(1 for _ in sc.fault_refs())
        print(f"{path}: ok (topology {sc.topology}"
              + (f", variant {sc.variant}" if sc.variant else "")
              + f", {faults} fault{'s' if faults != 1 else ''} named)")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    # the supervisor refuses an unknown cause (it has the list loaded; importing it here
    # would cost every submission a third of a second)
    r = access.ask(args.lab, "submit", cause=args.cause, node=args.node)
    print(f"diagnosis {args.cause} on {args.node}: {submit_answer(r)}")
    return 0


def submit_answer(r: dict) -> str:
    """What the supervisor's answer to a submission says: "recorded", or with immediate
    feedback "right" or "wrong"."""
    if r.get("feedback") == "immediate":
        return "right" if r.get("right") else "wrong"
    return "recorded"


def cmd_score(args: argparse.Namespace) -> int:
    """Score the attempt. The output paths are checked first: scoring closes the attempt,
    so a path that cannot be written must fail before, not lose the report after."""
    from lab.engine.state import results_root

    html = writable_file(Path(args.html), "--html") if args.html else None
    if not access.is_instructor():
        if args.results:
            raise LabError("--results is for instructors: attempt records are private")
        return _show_score(args, access.ask(args.lab, "score", html=html is not None), html)
    results = writable_dir(Path(args.results) if args.results else results_root(), "--results")
    r = access.ask(args.lab, "score", timeout=120, results=str(results))
    return _show_score(args, r, html)


def _show_score(args: argparse.Namespace, r: dict, html: Path | None) -> int:
    if args.json:
        print(json.dumps(r["json"], indent=1))
    else:
        print(r["text"])
    if r.get("path"):  # an instructor's: a trainee is not told where records are kept
        print(f"\nattempt record: {r['path']}", file=sys.stderr if args.json else sys.stdout)
    if html is not None:
        try:
            html.write_text(r["html"])
        except OSError as e:
            where = f" (record: {r['path']})" if r.get("path") else ""
            raise LabError(f"the attempt is scored{where} but --html {html} could not be "
                           f"written: {e.strerror or e}") from None
    return 0


def writable_dir(path: Path, option: str) -> Path:
    """``path`` created if need be, as an absolute path; a LabError if it cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LabError(f"{option} {path}: cannot create it: {e.strerror or e}",
                       hint="nothing was scored; the attempt is still open") from None
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise LabError(f"{option} {path}: not a writable directory",
                       hint="nothing was scored; the attempt is still open")
    return path.resolve()


def writable_file(path: Path, option: str) -> Path:
    """``path`` if a file can be written there (its folder exists and is writable)."""
    parent = path.parent
    problem = ("is a directory" if path.is_dir()
               else f"no directory {parent}" if not parent.is_dir()
               else f"{parent} is not writable" if not os.access(parent, os.W_OK | os.X_OK)
               else "not writable" if path.exists() and not os.access(path, os.W_OK)
               else "")
    if problem:
        raise LabError(f"{option} {path}: {problem}",
                       hint="nothing was scored; the attempt is still open")
    return path


def write_file(name: str, text: str) -> None:
    try:
        Path(name).write_text(text)
    except OSError as e:
        raise LabError(f"cannot write {name}: {e.strerror}") from None


def _results_dir(args: argparse.Namespace) -> Path:
    from lab.engine.state import results_root

    return Path(args.results) if args.results else results_root()


def cmd_results(args: argparse.Namespace) -> int:
    import csv
    from dataclasses import asdict

    from lab import results

    found = results.rows(_results_dir(args), args.trainee, args.scenario)
    if args.json:
        print(json.dumps([asdict(r) for r in found], indent=1))
    elif args.csv:
        fields = list(results.Row.__dataclass_fields__)
        writer = csv.DictWriter(sys.stdout, fieldnames=fields)
        writer.writeheader()
        writer.writerows(asdict(r) for r in found)
    elif not found:
        print("no attempts recorded")
    else:
        print(results.table(found))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from lab import results
    from lab.scoring.attempt import load
    from lab.scoring.report import render_html, render_text, to_json

    report = results.report_of(load(results.find(_results_dir(args), args.attempt)))
    if args.json:
        print(json.dumps(to_json(report), indent=1))
    elif args.html:
        write_file(args.html, render_html(report))
        print(f"report written to {args.html}")
    else:
        print(render_text(report), end="")
    return 0


COMMANDS = {"start": cmd_start, "ticket": cmd_ticket, "hint": cmd_hint, "causes": cmd_causes,
            "faults": cmd_faults, "scenarios": cmd_scenarios, "scenario": cmd_scenario,
            "submit": cmd_submit, "score": cmd_score, "results": cmd_results,
            "report": cmd_report}
