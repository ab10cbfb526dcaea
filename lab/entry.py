"""The `lab` command's entry point: Ctrl-C before the command runs ends it quietly, and
so does a closed output pipe.

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
        return run()
    except BrokenPipeError:
        # whoever read the output went away (`lab ls | head`): end quietly, as Unix tools
        # do; stdout goes to /dev/null so that Python's own final flush says nothing either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
