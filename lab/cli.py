"""The `lab` command: parses arguments, calls the library, renders results and errors."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from lab import access, exercise_cli
from lab.engine.procs import exit_now
from lab.errors import Interrupted, LabError
from lab.evidence import cli as evidence_cli
from lab.playbooks import cli as playbook_cli


def lab_name(text: str) -> str:
    """--lab NAME: a valid lab name (an empty one is an error, not "not given")."""
    from lab.engine.state import check_lab_name

    try:
        return check_lab_name(text)
    except LabError as e:
        raise argparse.ArgumentTypeError(f"{e.message} ({e.hint})") from None


def _add_lab(p: argparse.ArgumentParser, help: str = "the lab instance (default: the only "
             "one running)") -> None:
    p.add_argument("--lab", metavar="NAME", type=lab_name, help=help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab", description="Mail-path troubleshooting lab.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("up", help="bring up a lab from a topology (a name or a YAML file)")
    p.add_argument("topology")
    p.add_argument("--variant", metavar="NAME", help="one of the topology's variants")
    _add_lab(p)
    p = sub.add_parser("down", help="tear a lab down")
    _add_lab(p)
    p = sub.add_parser("ls", help="list labs")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("status", help="show a lab's nodes, interfaces and addresses")
    p.add_argument("--json", action="store_true")
    _add_lab(p)
    p = sub.add_parser("exec", help="run a command inside a node: lab exec NODE -- CMD...")
    p.add_argument("node")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    _add_lab(p)
    p = sub.add_parser("shell", help="open an interactive shell inside a node")
    p.add_argument("node")
    _add_lab(p)
    p = sub.add_parser("verify", help="run the end-to-end probes (inbound, outbound, alert)")
    p.add_argument("probes", nargs="*", metavar="PROBE")
    p.add_argument("--json", action="store_true")
    _add_lab(p)
    p = sub.add_parser("service", help="start, stop or restart a service on a node")
    p.add_argument("node")
    p.add_argument("kind", help="dns, smtp, firewall, proxy, alerts")
    p.add_argument("action", choices=["start", "stop", "restart"])
    _add_lab(p)
    p = sub.add_parser("fault", help="(instructors) apply, revert or check a fault by hand")
    p.add_argument("action", choices=["apply", "revert", "check"],
                   help="check: is the fault's symptom gone (its repair check)")
    p.add_argument("name")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    _add_lab(p)
    p = sub.add_parser("clean", help="remove everything left by labs whose supervisor died")
    _add_lab(p, help="only this lab")
    exercise_cli.add_parsers(sub, _add_lab)
    playbook_cli.add_parsers(sub, _add_lab)
    evidence_cli.add_parsers(sub, _add_lab)
    p = sub.add_parser("validate", help="check a topology file without building anything")
    p.add_argument("topology")
    p = sub.add_parser("serve", help="(instructors) the classroom server: trainees in web "
                                     "terminals, a live dashboard")
    p.add_argument("--listen", metavar="ADDRESS:PORT", default="127.0.0.1:8080",
                   help="where to listen (default 127.0.0.1:8080; port 0: any free port)")
    p.add_argument("--url", metavar="URL", help="the address browsers use, when it is not "
                   "the listening one (behind a reverse proxy: https://lab.school.example)")
    p.add_argument("--lab-prefix", metavar="PREFIX",
                   help="name the labs PREFIX-1, PREFIX-2, ... (default cls-<random>)")
    p.add_argument("--parallel", type=int, default=4, metavar="N",
                   help="labs built at once when a class starts (default 4)")
    p = sub.add_parser("topology", help="describe a topology; --svg FILE draws it")
    p.add_argument("topology", help="a name from topologies/ or a path to a YAML file")
    p.add_argument("--variant", metavar="NAME", help="one of the topology's variants")
    p.add_argument("--svg", metavar="FILE", help="write the picture as SVG to FILE")
    p.add_argument("--roles", action="store_true",
                   help="what each node is for (the roles derived or named; docs/roles.md)")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command not in access.TRAINEE_COMMANDS + access.OPEN_COMMANDS:
            access.require_instructor(args.command)
        return COMMANDS[args.command](args) or 0
    except Interrupted as e:
        print(f"lab: interrupted: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return 130
    except LabError as e:
        print(f"lab: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return 130


def cmd_up(args: argparse.Namespace) -> int:
    from lab.engine import lifecycle

    started = time.monotonic()
    state = lifecycle.up(args.topology, args.lab, variant=args.variant)
    try:
        hosts = sum(1 for r in state.nodes.values() if r.kind == "host")
        print(f"lab {state.lab} is up: topology {state.topology}, {hosts} nodes "
              f"({time.monotonic() - started:.2f} s)")
    except KeyboardInterrupt:
        raise Interrupted(f"lab '{state.lab}' is up",
                          hint=f"`lab down --lab {state.lab}` takes it down") from None
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from lab.engine import lifecycle

    lifecycle.require_root()
    lab = lifecycle.pick_lab(args.lab)
    lifecycle.down(lab)
    print(f"lab {lab} is down")
    exit_now(0)  # the interpreter's clean-up would add tens of ms to `lab down`
    return 0  # not reached


def cmd_ls(args: argparse.Namespace) -> int:
    from lab.engine import lifecycle
    from lab.engine.state import LabState, lab_names

    if not access.is_instructor():
        return _trainee_ls(args)
    lifecycle.require_root()
    rows = []
    for lab in lab_names():
        now = lifecycle.phase(lab)  # before the state: a lab being built is never "dead"
        try:
            state = LabState.load(lab)
        except LabError:
            state = None
        rows.append({"lab": lab, "topology": state.topology if state else "?",
                     "running": now == "running", "state": now,
                     "created": state.created if state else None,
                     "supervisor": state.supervisor.pid if state else None})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("no labs")
        return 0
    print(f"{'LAB':<24} {'TOPOLOGY':<16} {'STATE':<28} UP SINCE")
    for r in rows:
        state = {"dead": "dead (run `lab clean`)"}.get(r["state"], r["state"])
        since = time.strftime("%H:%M:%S", time.localtime(r["created"])) if r["created"] else "-"
        print(f"{r['lab']:<24} {r['topology']:<16} {state:<28} {since}")
    return 0


def _trainee_ls(args: argparse.Namespace) -> int:
    from lab.trainee_cli import list_labs

    rows = list_labs()
    if args.json:
        print(json.dumps(rows, indent=1))
    elif not rows:
        print("no lab of yours is running")
    for r in rows if not args.json else []:
        print(f"{r['lab']:<24} nodes: {', '.join(r['nodes'])}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from lab.engine import control, lifecycle

    lifecycle.require_root()
    lab = lifecycle.pick_lab(args.lab)
    status = control.request(lab, "status")
    if args.json:
        print(json.dumps(status, indent=1))
    else:
        print(render_status(status))
    return 0


def render_status(status: dict[str, Any]) -> str:
    lines = [(f"lab {status['lab']} (topology {status['topology']}), supervisor pid "
              f"{status['supervisor']}")]
    lines.append("segments: " + ", ".join(
        f"{name} {seg['subnet']}" for name, seg in status["segments"].items()))
    lines.append(f"{'NODE':<10} {'IFACE':<6} {'STATE':<6} ADDRESSES")
    for name, node in status["nodes"].items():
        for i, intf in enumerate(node["interfaces"]):
            label = name if i == 0 else ""
            lines.append(f"{label:<10} {intf['name']:<6} {intf['state']:<6} "
                         + " ".join(intf["addresses"]))
        gateways = [r for r in node["routes"] if r.startswith("default")]
        if gateways:
            lines.append(f"{'':<10} route  {gateways[0]}")
        if node.get("services"):
            health = [f"{s['kind']} {'healthy' if s['healthy'] else 'UNHEALTHY'}"
                      for s in node["services"]]
            lines.append(f"{'':<10} svc    " + ", ".join(health))
    return "\n".join(lines)


def cmd_exec(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise LabError("no command given", hint="lab exec NODE -- CMD [ARGS...]")
    sys.stdout.flush()
    if not access.is_instructor():
        from lab.trainee_cli import execute

        exit_now(execute(args.lab, args.node, cmd))
    from lab.engine import lifecycle, nodeexec

    lifecycle.require_root()
    lifecycle.require_dependencies()
    exit_now(nodeexec.execute(lifecycle.pick_lab(args.lab), args.node, cmd))
    return 0  # not reached


RECORD_GRACE = 2.0  # seconds `lab shell` waits, once bash has exited, for its last lines


def cmd_shell(args: argparse.Namespace) -> int:
    """An interactive shell in the node on a terminal of the node's own, relayed to this
    one; each command line typed is recorded."""
    import threading

    from lab.engine import lifecycle, nodeshell, relay

    if not access.is_instructor():
        from lab.trainee_cli import shell

        return shell(args.lab, args.node)
    lifecycle.require_root()
    lifecycle.require_dependencies()
    lab = lifecycle.pick_lab(args.lab)
    shell = nodeshell.open_lab_shell(lab, args.node, *relay.window_size(0))
    recorder = threading.Thread(target=nodeshell.record_commands, args=(shell,), daemon=True)
    try:
        recorder.start()
        old = relay.forward_signals(lambda _signum: shell.close())
        try:
            relay.terminal(shell.master)
            code = shell.wait()
        finally:
            relay.restore_signals(old)
        recorder.join(RECORD_GRACE)  # the last lines typed (a job left running may hold on)
    finally:
        shell.close()
    lifecycle.check_node_up(lab, args.node, what="the shell")
    return relay.exit_code(code)


def cmd_verify(args: argparse.Namespace) -> int:
    results = access.ask(args.lab, "probe", names=args.probes or None)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for r in results:
            verdict = "PASS" if r["passed"] else "FAIL"
            print(f"{r['name']:<9} {verdict}  {r['detail']} ({r['seconds']:.2f} s)")
    return 0 if all(r["passed"] for r in results) else 1


def cmd_service(args: argparse.Namespace) -> int:
    print(access.ask(args.lab, "service", node=args.node, kind=args.kind, action=args.action))
    return 0


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise LabError(f"bad --param '{pair}'", hint="use --param KEY=VALUE")
        out[key] = value
    return out


def cmd_fault(args: argparse.Namespace) -> int:
    from lab.engine import control, lifecycle

    lifecycle.require_root()
    lab = lifecycle.pick_lab(args.lab)
    params = _params(args.param)
    # the supervisor checks the name and the parameters: it has the catalog loaded
    result = control.request(lab, "fault", action=args.action, name=args.name, params=params)
    print(json.dumps(result, indent=1))
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    from lab.engine import lifecycle
    from lab.engine.state import state_root

    report = lifecycle.clean(args.lab)
    if not report.labs and not report.trash and not report.unmounted:
        print("nothing to clean")
    for c in report.labs:
        print(f"cleaned lab {c.lab}: stopped {c.killed} processes, removed its state")
    if report.trash:
        print(f"deleted {len(report.trash)} state folder(s) of labs taken down that nothing "
              "was deleting")
    if report.unmounted:
        print(f"unmounted the state root's tmpfs ({state_root()}): no lab is left in it")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from lab.engine import lifecycle

    topo = lifecycle.load(args.topology)
    variants = f", {len(topo.variants)} variants checked" if topo.variants else ""
    print(f"{args.topology}: ok ({len(topo.nodes)} nodes, {len(topo.segments)} segments"
          f"{variants})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The classroom server, until Ctrl-C or SIGTERM; then every lab it started goes
    down."""
    from lab.engine import lifecycle

    lifecycle.require_root()
    lifecycle.require_dependencies()
    from lab.web.serve import Options, run

    if args.url and not args.url.startswith(("http://", "https://")):
        raise LabError(f"--url {args.url!r}: not an http:// or https:// address")
    if args.parallel < 1:
        raise LabError("--parallel is at least 1")
    opts = Options(args.listen, args.url, args.lab_prefix, args.parallel)
    left = run(opts, lambda line: print(line, flush=True))
    print(f"classroom server stopped; {len(left)} labs taken down"
          + (f": {', '.join(left)}" if left else ""), flush=True)
    return 0


def cmd_topology(args: argparse.Namespace) -> int:
    from lab.engine import lifecycle
    from lab.model.topology import load_topology
    from lab.ui.topology_svg import node_lines, render_svg

    topo = load_topology(lifecycle.resolve_topology(args.topology), args.variant)
    if args.svg:
        try:
            Path(args.svg).write_text(render_svg(topo))
        except OSError as e:
            raise LabError(f"cannot write {args.svg}: {e.strerror}") from None
        print(f"wrote {args.svg} ({len(topo.nodes)} nodes, {len(topo.segments)} segments)")
        return 0
    print(f"topology {topo.name}" + (f" (variant {args.variant})" if args.variant else ""))
    for name, seg in topo.segments.items():
        print(f"segment {name} {seg.subnet}" + (f": {seg.description}" if seg.description else ""))
    for name, node in topo.nodes.items():
        lines = node_lines(name, node)
        print(f"  {lines[0]:<10} " + "  ".join(lines[1:]))
    if args.roles:
        from lab.model.roles import derive_roles

        print("roles:")
        for key, value in derive_roles(topo).vars().items():
            if key not in ("roles.topology", "roles.used_addresses"):
                print(f"  {key.removeprefix('roles.'):<28} {value}")
    return 0


COMMANDS = {
    "up": cmd_up, "topology": cmd_topology, "down": cmd_down, "ls": cmd_ls, "status": cmd_status, "exec": cmd_exec,
    "shell": cmd_shell, "verify": cmd_verify, "service": cmd_service, "fault": cmd_fault,
    "clean": cmd_clean, "validate": cmd_validate, "serve": cmd_serve,
    **exercise_cli.COMMANDS,
    **playbook_cli.COMMANDS,
    **evidence_cli.COMMANDS,
}

if __name__ == "__main__":
    sys.exit(main())
