"""The `lab` command's entry point: Ctrl-C before the command runs ends it quietly, after
it has ended changes nothing; a closed output pipe ends it quietly too.

Importing the CLI takes a moment; a KeyboardInterrupt raised among those imports would
print a traceback. Until ``lab.cli.main`` runs (and handles Ctrl-C itself), SIGINT simply
ends the process: nothing has been done yet.
"""
from __future__ import annotations

import os
import signal
import sys


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from lab.cli import main as run

    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        status = run()
    except BrokenPipeError:
        # whoever read the output went away (`lab ls | head`): end quietly, as Unix tools
        # do; stdout goes to /dev/null so that Python's own final flush says nothing either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 128 + signal.SIGPIPE
    except KeyboardInterrupt:  # after the command had said how it ended
        status = 130
    # the command is done and has said so: a Ctrl-C now changes nothing (it would end the
    # interpreter by the signal, as if the command had been cut short)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return status
