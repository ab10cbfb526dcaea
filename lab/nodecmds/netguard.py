"""``netguard``: the firewall's connection-log viewer a trainee runs on the firewall node.

    netguard -An            every entry, numeric, one connection per line
    netguard -An -s ADDR    only entries whose source or destination is ADDR

Column 2 is the verdict: P permitted, D denied, X proxied, Xr proxied and relayed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lab.protocols.fwlog import CONN_LOG

NO_LOG = "netguard: no connection log (is this the firewall?)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="netguard",
        description="Show the firewall's connection log. Verdicts (column 2): "
        "P permitted, D denied, X proxied, Xr proxied and relayed.",
    )
    p.add_argument("-A", "--all", action="store_true", help="show all entries (default)")
    p.add_argument("-n", "--numeric", action="store_true",
                   help="numeric addresses and ports (always the case)")
    p.add_argument("-s", "--address", metavar="ADDR",
                   help="only entries with ADDR as source or destination")
    p.add_argument("--root", default="/", help=argparse.SUPPRESS)
    return p


def _matches(line: str, address: str) -> bool:
    cols = line.split()
    for col in cols[3:5]:
        if col == address or col.rpartition(":")[0] == address:
            return True
    return any(c.partition("=")[2].rpartition(":")[0] == address for c in cols[5:])


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = Path(args.root) / CONN_LOG.lstrip("/")
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        print(NO_LOG, file=sys.stderr)
        return 1
    except OSError as e:
        print(f"netguard: cannot read the connection log: {e.strerror}", file=sys.stderr)
        return 1
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if args.address and not _matches(line, args.address):
            continue
        out.append(line)
    if out:
        sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
