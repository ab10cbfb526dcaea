"""The `lab` command's entry point: Ctrl-C before the command runs ends it quietly.

Importing the CLI takes a moment; a KeyboardInterrupt raised among those imports would
print a traceback. Until ``lab.cli.main`` runs (and handles Ctrl-C itself), SIGINT simply
ends the process: nothing has been done yet.
"""
from __future__ import annotations

import signal


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from lab.cli import main as run

    signal.signal(signal.SIGINT, signal.default_int_handler)
    return run()
