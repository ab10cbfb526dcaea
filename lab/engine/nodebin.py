"""The lab's own commands inside nodes (netguard, mailq, ...).

They are small wrappers in a per-lab directory, bind-mounted over /usr/local/sbin in
every node, so the host's command path stays untouched.
"""
from __future__ import annotations

import sys
from pathlib import Path

MOUNT_POINT = "/usr/local/sbin"

# command name -> python module with a main(argv) that runs inside the node
NODE_COMMANDS = {
    "netguard": "lab.services.netguard",
    "mailq": "lab.services.mailq",
    "netguard-alert": "lab.services.alert_cli",
    "lab": "lab.cli",  # the trainee verbs, through the node's trainee channel
}


def write_node_bin(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, module in NODE_COMMANDS.items():
        path = directory / name
        path.write_text(f'#!/bin/sh\nexec {sys.executable} -m {module} "$@"\n')
        path.chmod(0o755)
