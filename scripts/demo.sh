#!/usr/bin/env bash
# The main job, unattended: bring up the reference lab, show it, run a few checks, tear down.
set -euo pipefail
cd "$(dirname "$0")/.."
LAB=".venv/bin/lab"
NAME="demo-$$"
trap '$LAB down --lab "$NAME" >/dev/null 2>&1 || true' EXIT

step() { printf '\n== %s\n' "$*"; }

step "bring up the reference topology"
$LAB up mail-dmz --lab "$NAME"
step "status"
$LAB status --lab "$NAME"
step "the admin workstation reaches its gateway, the firewall"
$LAB exec --lab "$NAME" admin -- ping -c 2 -W 1 10.1.0.1
step "the firewall reaches an internet host"
$LAB exec --lab "$NAME" fw -- ping -c 2 -W 1 203.0.113.20
step "each node has its own resolver configuration"
for node in mx ext-ws; do
  printf '%s: ' "$node"; $LAB exec --lab "$NAME" "$node" -- cat /etc/resolv.conf | tr '\n' ' '; echo
done
step "tear down"
$LAB down --lab "$NAME"
trap - EXIT
echo "demo finished"
