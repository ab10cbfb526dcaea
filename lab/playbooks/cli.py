"""`lab playbook run|explain|validate`: playbooks as automated trainees, and the matrix."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from lab.errors import LabError


def add_parsers(sub, add_lab) -> None:
    p = sub.add_parser("playbook", help="run troubleshooting playbooks against scenarios")
    psub = p.add_subparsers(dest="playbook_command", required=True, metavar="ACTION")
    r = psub.add_parser("run", help="the regression matrix: playbooks x scenarios x seeds")
    r.add_argument("playbooks", nargs="+", metavar="PLAYBOOK", help="a name from playbooks/ or a path")
    r.add_argument("--scenario", action="append", default=[], metavar="NAME",
                   help="a scenario name or path (repeatable)")
    r.add_argument("--all", action="store_true", help="every scenario in scenarios/")
    _add_fault(r)
    _add_topology(r)
    r.add_argument("--seed", action="append", type=int, default=[], metavar="N",
                   help="draw faults with this seed (repeatable; default 0)")
    r.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="labs at once (default six per core, at most 48)")
    r.add_argument("--junit", metavar="FILE", help="write JUnit XML here")
    r.add_argument("--json", metavar="FILE", help="write every run's evidence as JSON here")
    r.add_argument("--results", metavar="DIR", help="where the attempt records go")
    _add_prefix(r)
    e = psub.add_parser("explain", help="run one playbook on one scenario, step by step")
    e.add_argument("playbook")
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--scenario", metavar="NAME")
    _add_fault(which)
    _add_topology(e)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--results", metavar="DIR")
    _add_prefix(e)
    v = psub.add_parser("validate", help="check playbook files without running anything")
    v.add_argument("playbooks", nargs="+", metavar="PLAYBOOK")


def _add_fault(p) -> None:
    p.add_argument("--fault", action="append", default=[], metavar="NAME[:KEY=VALUE,...]",
                   help="a scenario made on the fly with this one fault (repeatable)")


def _add_topology(p) -> None:
    p.add_argument("--topology", metavar="NAME", default=None,
                   help="the topology of --fault's scenarios (default: the first the "
                        "playbooks run on)")


def _add_prefix(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lab-prefix", metavar="PREFIX", default=None,
                   help="name the labs PREFIX-1, PREFIX-2, ... (default pb-<pid>)")


def lab_prefix(args: argparse.Namespace, count: int) -> str:
    """The labs' name prefix, checked against the longest name it will give."""
    from lab.engine.state import check_lab_name

    prefix = args.lab_prefix if args.lab_prefix is not None else f"pb-{os.getpid()}"
    try:
        check_lab_name(f"{prefix}-{max(count, 1)}")
    except LabError as e:
        raise LabError(f"--lab-prefix {prefix!r}: {e.message} once numbered", hint=e.hint
                       ) from None
    return prefix


def _scenarios(args: argparse.Namespace, names: set[str]) -> list:
    from lab.engine.attempt import load
    from lab.paths import SCENARIO_DIR

    refs = list(args.scenario)
    if args.all:
        refs += [p.stem for p in sorted(SCENARIO_DIR.glob("*.yaml"))]
    loaded = [load(ref) for ref in dict.fromkeys(refs)]
    if not refs and args.fault:
        return []
    if not refs:
        loaded = [load(p.stem) for p in sorted(SCENARIO_DIR.glob("*.yaml"))]
        loaded = [(p, s) for p, s in loaded if names & set(s.expect_playbooks)]
        if not loaded:
            raise LabError("no scenario expects these playbooks",
                           hint="name scenarios with --scenario NAME, or use --all")
    return loaded


def cmd_run(args: argparse.Namespace) -> int:
    from lab.engine import lifecycle
    from lab.playbooks.matrix import load_playbook_ref, plan

    lifecycle.require_root()
    playbooks = [load_playbook_ref(ref)[1] for ref in args.playbooks]
    scenarios = _scenarios(args, {pb.name for pb in playbooks})
    from lab.playbooks import adhoc  # the models: loaded only where they are needed

    with adhoc.fault_scenarios(args.fault, playbooks, args.topology) as made:
        for path, sc in made:
            print(adhoc.describe(path, sc), file=sys.stderr, flush=True)
        skipped: list[tuple[str, str]] = []
        jobs = plan(playbooks, scenarios + made, args.seed or [0], skipped)
        if skipped:
            print(f"{len(skipped)} pairs left out: the playbook does not run on the scenario's "
                  "topology (its topologies and needs)", file=sys.stderr, flush=True)
        if not jobs:
            raise LabError("no playbook runs on these scenarios' topologies",
                           hint="see the playbooks' topologies: and needs:")
        return _run_jobs(args, jobs)


def _run_jobs(args: argparse.Namespace, jobs: list) -> int:
    from lab.playbooks import render
    from lab.playbooks.matrix import DEFAULT_JOBS, Matrix
    from lab.progress import Progress

    prefix = lab_prefix(args, len(jobs))
    parallel = args.jobs or DEFAULT_JOBS
    print(f"{len(jobs)} runs, {parallel} at once", file=sys.stderr, flush=True)
    results = Path(args.results) if args.results else None
    with Progress(len(jobs), "playbook runs") as progress:
        def on_event(kind, job, data) -> None:
            name = f"{job.playbook.name} x {job.scenario.name}"
            if kind == "start":
                progress.begin(name, f"  start {name} seed {job.seed} in lab {data}")
            elif kind == "done":
                progress.done(name, lambda n: render.progress_line(data, n, len(jobs)))

        outcomes = Matrix(jobs, parallel, results, on_event, prefix).run()
    print(render.render_matrix(outcomes))
    print(render.render_accuracy(outcomes))
    misses = render.render_misses(outcomes)
    if misses:
        print(misses)
    if args.junit:
        Path(args.junit).write_text(render.render_junit(outcomes))
    if args.json:
        Path(args.json).write_text(json.dumps([o.to_dict() for o in outcomes], indent=1))
    if any(o.verdict == "error" for o in outcomes):
        return 2
    return 1 if any(o.missed for o in outcomes) else 0


def cmd_explain(args: argparse.Namespace) -> int:

    from lab.engine import lifecycle
    from lab.engine.attempt import attempt_lab, load
    from lab.playbooks import render
    from lab.playbooks.matrix import load_playbook_ref
    from lab.playbooks.runner import run_playbook

    lifecycle.require_root()
    _, playbook = load_playbook_ref(args.playbook)
    lab = f"{lab_prefix(args, 1)}-1"
    results = Path(args.results) if args.results else None
    from lab.playbooks import adhoc

    with adhoc.fault_scenarios(args.fault, [playbook], args.topology) as made:
        path, scenario = made[0] if made else load(args.scenario)
        if made:
            print(adhoc.describe(path, scenario), file=sys.stderr, flush=True)
        with attempt_lab(path, scenario, lab, args.seed):
            print(f"lab {lab}: scenario {scenario.name} (seed {args.seed}), playbook "
                  f"{playbook.name}", file=sys.stderr, flush=True)
            result = run_playbook(lab, playbook, results)
    print(render.render_result(result), end="")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from lab.playbooks.matrix import load_playbook_ref

    for ref in args.playbooks:
        path, pb = load_playbook_ref(ref)
        print(f"{path}: ok ({len(pb.steps)} steps, {len(pb.conclusions)} conclusions)")
    return 0


def cmd_playbook(args: argparse.Namespace) -> int:
    return {"run": cmd_run, "explain": cmd_explain,
            "validate": cmd_validate}[args.playbook_command](args)


COMMANDS = {"playbook": cmd_playbook}
