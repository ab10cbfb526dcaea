#!/usr/bin/env bash
# The main job, unattended: one complete exercise as a trainee would do it (start, read the
# ticket, investigate with ordinary tools, diagnose, repair, verify, score), then the
# reference playbooks diagnosing a few scenarios on their own.
set -euo pipefail
cd "$(dirname "$0")/.."
LAB=".venv/bin/lab"
NAME="demo-$$"
trap '$LAB down --lab "$NAME" >/dev/null 2>&1 || true' EXIT

step() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "start the exercise: the lab comes up broken, the ticket is printed"
# the instructor forces the fault this walk-through repairs (a trainee's draw comes from the
# seed: `lab start inbound-bounces` alone draws one of the scenario's faults and details)
run $LAB start inbound-bounces --fault dns-wrong-address:address=203.0.113.26 --lab "$NAME"

step "the lab: nodes, addresses, services"
run $LAB status --lab "$NAME"

step "the ticket says 'since this morning': what the morning left behind at the sender"
run $LAB exec --lab "$NAME" mx-ext -- mailq
run $LAB exec --lab "$NAME" mx-ext -- sh -c 'grep status= /var/log/mail.log | tail -n 3'
run $LAB exec --lab "$NAME" mx-ext -- sh -c 'grep "^Subject: Undelivered" /var/mail/* | wc -l'

step "investigate the way the method says: DNS first, from an external system"
run $LAB exec --lab "$NAME" ext-ws -- dig +short mx example.net
run $LAB exec --lab "$NAME" ext-ws -- dig +short mail.example.net
run $LAB exec --lab "$NAME" ext-ws -- dig +short @203.0.113.53 mail.example.net
echo "(the public A record should be the firewall's static-NAT address 203.0.113.25)"
echo "(a sender on the internet, mx-ext, tries the address it was given)"
run $LAB exec --lab "$NAME" mx-ext -- swaks --server mail.example.net --to jsmith@example.net \
    --from jsmith@example.com --timeout 5 || true

step "diagnose"
run $LAB submit dns-wrong-address --node ns-ext --lab "$NAME"

step "repair: fix the record in ns-ext's zone file, flush the internet resolver's cache"
run $LAB exec --lab "$NAME" ns-ext -- grep mail /etc/bind/db.example.net
run $LAB exec --lab "$NAME" ns-ext -- sed -i 's/203\.0\.113\.26/203.0.113.25/' /etc/bind/db.example.net
run $LAB service resolver dns restart --lab "$NAME"
run $LAB exec --lab "$NAME" ext-ws -- dig +short mail.example.net

step "verify end to end: inbound mail, outbound mail, a firewall alert"
run $LAB verify --lab "$NAME"

step "score"
run $LAB score --lab "$NAME"
run $LAB down --lab "$NAME"

step "the reference playbooks diagnose three scenarios on their own"
run $LAB playbook run inbound outbound alerts --scenario dns-outage --scenario nat-inbound \
    --scenario alerts-missing

trap - EXIT
echo
echo "demo finished"
