"""The lab's own commands inside nodes (netguard, mailq, ...).

They are small wrappers in a per-lab directory, bind-mounted over /usr/local/sbin in
every node, so the host's command path stays untouched.
"""
from __future__ import annotations

import sys
from pathlib import Path

MOUNT_POINT = "/usr/local/sbin"
NODE_SOCKET_DIR = "/run/lab-node"  # inside a node: the trainee channel of its lab
NODE_SOCKET = f"{NODE_SOCKET_DIR}/lab.sock"

# command name -> python module with a main(argv) that runs inside the node, and the
# name of that function when it is not ``main``
NODE_COMMANDS = {
    "netguard": "lab.nodecmds.netguard",
    "mailq": "lab.protocols.mailq",
    "netguard-alert": "lab.nodecmds.alert_cli",
    "postqueue": "lab.nodecmds.postqueue",
    "sendmail": "lab.nodecmds.postqueue:sendmail_main",
    "lab": "lab.cli",  # the trainee verbs, through the node's trainee channel
}


def write_node_bin(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, target in NODE_COMMANDS.items():
        module, _, func = target.partition(":")
        if func:
            run = (f'exec {sys.executable} -c "import sys; from {module} import {func}; '
                   f'sys.exit({func}(sys.argv[1:]))" "$@"')
        else:
            run = f'exec {sys.executable} -m {module} "$@"'
        path = directory / name
        path.write_text(f"#!/bin/sh\n{run}\n")
        path.chmod(0o755)
