"""`lab start SCENARIO --trainees alice,bob,...`: one attempt per trainee, each in a lab of
its own, a few built at a time, with progress on the terminal.

The same verb as one trainee's `lab start`, with the same meaning per trainee (the
attempt is bound to the Unix user of that name, who works on it without root); the labs
are named PREFIX-1 ... PREFIX-N (``--lab PREFIX``, default the scenario's name) in the
order the names are given. The classroom server (`lab serve`) starts its classes the
same way (lab.engine.batch).
"""
from __future__ import annotations

import argparse
import sys

from lab.errors import Interrupted, LabError


def cmd_start_class(args: argparse.Namespace) -> int:
    from lab.engine import batch, lifecycle
    from lab.engine.attempt import load
    from lab.exercise_cli import render_ticket, trainee_uid

    lifecycle.require_root()
    if args.fault:
        raise LabError("--fault is for one attempt: not with --trainees")
    names = batch.trainee_names(args.trainees)
    path, scenario = load(args.scenario)
    labs = batch.seat_labs(args.lab or scenario.name, len(names))
    seats = [batch.Seat(name, lab, args.seed if args.seed is not None else batch.random_seed(),
                        trainee_uid(name)) for name, lab in zip(names, labs)]
    for seat in seats:
        if seat.uid is None:
            print(f"note: no Unix user '{seat.trainee}': only root can work on lab "
                  f"{seat.lab}", file=sys.stderr)
    _start(path, scenario, seats, args.parallel or batch.DEFAULT_PARALLEL)
    up = [s for s in seats if not s.error]
    print(f"{'TRAINEE':<20} {'LAB':<34} {'SEED':>5}  STATE")
    for s in seats:
        state = f"failed: {s.error}" if s.error else "up"
        print(f"{s.trainee:<20} {s.lab:<34} {s.seed:>5}  {state}")
    if up:
        print(f"\nscenario {scenario.name}: {len(up)} of {len(seats)} labs up\n")
        print(render_ticket(up[0].ticket or {}))
    return 0 if len(up) == len(seats) else 1


def _start(path, scenario, seats, parallel: int) -> None:
    """Start the seats with a progress bar; on Ctrl-C every lab that came up goes down."""
    from lab.engine import batch
    from lab.progress import Progress

    with Progress(len(seats), f"starting {len(seats)} labs, {parallel} at once") as progress:
        def on_event(kind: batch.Event, seat: batch.Seat) -> None:
            if kind == "starting":
                progress.begin(seat.lab)
            else:
                state = f"failed: {seat.error}" if seat.error else "up"
                progress.done(seat.lab, lambda n: f"[{n}/{len(seats)}] lab {seat.lab} "
                                                  f"for {seat.trainee}: {state}")

        try:
            batch.start_seats(path, scenario, seats, parallel, on_event)
        except KeyboardInterrupt:
            from lab.engine.attempt import take_down

            up = [s.lab for s in seats if s.ticket is not None]
            for lab in up:
                take_down(lab)
            raise Interrupted(f"the class start was stopped; the {len(up)} labs that were "
                              "up are taken down again") from None
