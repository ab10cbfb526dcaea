"""The fault catalog: every fault shows its symptom to the ordinary tools, breaks the probe
it should, stays hidden from the lab's shells, is idempotent, reverts exactly, and its
repair check says "not repaired" after apply and "repaired" after revert.

The lab tests share one mail-dmz lab (module scope). ``lab verify`` runs the three
end-to-end probes; the alert probe counts only once the lab has an alerts service (until
then it fails with "no alerts service" whatever the fault, and alert faults are checked
through their direct symptoms).
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import lab.faults
from lab.errors import LabError
from lab.faults import CATALOG, FAMILIES, get_fault
from lab.faults.base import Fault
from lab.model.roles import derive_roles, placeholders
from lab.model.topology import load_topology
from tests.conftest import node_run, run_lab

LAB = "t-faults"
XDIST_GROUPS = 4  # the longest file: its cases share out to 4 workers, a lab on each
PROBES = ("inbound", "outbound", "alert")
ROLES = derive_roles(load_topology(Path(__file__).parents[1] / "topologies" / "mail-dmz.yaml"))


# --- helpers --------------------------------------------------------------------------------


def sh(lab: str, node: str, *cmd: str):
    return node_run(lab, node, *cmd)


def out(lab: str, node: str, *cmd: str) -> str:
    return sh(lab, node, *cmd).stdout


def verify(lab: str, probes: tuple[str, ...] = ()) -> dict[str, dict]:
    p = run_lab("verify", "--lab", lab, "--json", *probes)
    assert p.stdout, p.stderr
    return {r["name"]: r for r in json.loads(p.stdout)}


def fault(lab: str, action: str, name: str, params: dict[str, str]) -> dict:
    args = ["fault", action, name, "--lab", lab]
    for k, v in params.items():
        args += ["--param", f"{k}={v}"]
    p = run_lab(*args)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


_SERIAL = re.compile(r"(IN\s+SOA\s+\S+\s+\S+\s+)\d+")

SURFACES = {
    "ns-ext": "cat /etc/bind/db.example.net",
    "dns-tld": "cat /etc/bind/db.net",
    "fw": "nft list ruleset; cat /etc/resolv.conf",
    "mx": "ip route; ip -br link; nft list ruleset; cat /etc/resolv.conf; "
          "cat /etc/ssl/certs/mail.example.net.pem",
    "ns-int": "ip route",
}


def surfaces(lab: str) -> dict[str, str]:
    """What a trainee could compare before and after (zone serials aside: an admin bumps
    them on every change, revert included)."""
    return {node: _SERIAL.sub(r"\1N", out(lab, node, "sh", "-c", cmd))
            for node, cmd in SURFACES.items()}


def dig(lab: str, node: str, *args: str) -> str:
    return out(lab, node, "dig", "+time=2", "+tries=1", *args)


def dig_short(lab: str, node: str, *args: str) -> str:
    return dig(lab, node, "+short", *args).strip()


def tcp_open(lab: str, node: str, host: str, port: int = 25) -> bool:
    return sh(lab, node, "nc", "-z", "-w2", host, str(port)).returncode == 0


def pings(lab: str, node: str, host: str) -> bool:
    return sh(lab, node, "ping", "-c1", "-W1", host).returncode == 0


def last_verdict(lab: str, src: str, dst: str) -> str | None:
    """The verdict column of fw's newest connection-log line from ``src`` to ``dst``."""
    verdict = None
    for line in out(lab, "fw", "netguard", "-An").splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[3].startswith(src + ":") and parts[4] == dst:
            verdict = parts[1]
    return verdict


def swaks(lab: str, node: str, server: str, to: str, sender: str) -> str:
    p = sh(lab, node, "swaks", "--server", server, "--to", to, "--from", sender,
           "--timeout", "8")
    return p.stdout + p.stderr


# --- the symptom each fault must show, with a trainee's tools -------------------------------


def s_wrong_address(lab):
    assert dig_short(lab, "ext-ws", "mail.example.net") == "203.0.113.26"


def s_mx_missing(lab):
    assert dig_short(lab, "ext-ws", "example.net", "MX") == ""
    assert "status: NOERROR" in dig(lab, "ext-ws", "example.net", "MX")


def s_mx_no_address(lab):
    assert dig_short(lab, "ext-ws", "example.net", "MX") == "10 mx1.example.net."
    assert "status: NXDOMAIN" in dig(lab, "ext-ws", "mx1.example.net")


def s_server_down(lab):
    assert sh(lab, "ext-ws", "dig", "+time=1", "+tries=1", "@203.0.113.53", "example.net",
              "SOA").returncode == 9  # no servers could be reached
    assert "status: SERVFAIL" in dig(lab, "ext-ws", "mail.example.net")


def s_lame(lab):
    assert "status: SERVFAIL" in dig(lab, "ext-ws", "mail.example.net")
    referral = dig(lab, "ext-ws", "+norec", "@203.0.113.11", "example.net", "NS")
    assert re.search(r"ns\.example\.net\.\s+\d+\s+IN\s+A\s+203\.0\.113\.11\b", referral)


def s_stale(lab):
    answer = dig(lab, "ext-ws", "+noall", "+answer", "mail.example.net")
    assert re.search(r"\s(8[0-9]{4})\s+IN\s+A\s+203\.0\.113\.24", answer), answer
    assert dig_short(lab, "ext-ws", "@203.0.113.53", "mail.example.net") == "203.0.113.25"


def s_static_missing(lab):
    assert not tcp_open(lab, "ext-ws", "203.0.113.25")
    assert last_verdict(lab, "203.0.113.100", "203.0.113.25:25") == "D"


def s_static_wrong(lab):
    assert not tcp_open(lab, "ext-ws", "203.0.113.25")
    log = out(lab, "fw", "netguard", "-An")
    assert re.search(r"203\.0\.113\.100:\d+ 203\.0\.113\.25:25 .*10\.1\.0\.26", log), log[-500:]


def s_dynamic_missing(lab):
    assert not pings(lab, "admin", "203.0.113.20")
    assert "status: SERVFAIL" in dig(lab, "mx", "example.com", "MX")


def s_permit_missing(lab):
    assert not tcp_open(lab, "ext-ws", "203.0.113.25")
    assert last_verdict(lab, "203.0.113.100", "203.0.113.25:25") == "D"


def s_icmp(lab):
    assert not pings(lab, "ext-ws", "203.0.113.25")
    assert tcp_open(lab, "ext-ws", "203.0.113.25")  # the red herring: SMTP is fine


def s_proxy_not_listed(lab):
    assert dig_short(lab, "ext-ws", "mail.example.net") == "203.0.113.1"
    talk = swaks(lab, "ext-ws", "203.0.113.1", "postmaster@example.net", "t@example.com")
    assert "451 4.4.1" in talk, talk


def s_mode_static(lab):
    assert dig_short(lab, "ext-ws", "mail.example.net") == "203.0.113.25"
    assert not tcp_open(lab, "ext-ws", "203.0.113.25")
    assert tcp_open(lab, "ext-ws", "203.0.113.1")  # the proxy listens on the fw itself


def s_mode_firewall(lab):
    assert dig_short(lab, "ext-ws", "mail.example.net") == "203.0.113.1"
    assert not tcp_open(lab, "ext-ws", "203.0.113.1")


def s_smtp_down(lab):
    assert not tcp_open(lab, "fw", "10.1.0.25")
    assert "Connection refused" in sh(lab, "admin", "nc", "-v", "-w2", "10.1.0.25", "25").stderr


def s_relay(lab):
    talk = swaks(lab, "admin", "10.1.0.25", "postmaster@example.com", "jsmith@example.net")
    assert "554 5.7.1" in talk and "Relay access denied" in talk, talk


def s_gateway(lab):
    assert "default via 10.1.0.254" in out(lab, "mx", "ip", "route")
    assert not pings(lab, "mx", "203.0.113.20")


def s_dns_gateway(lab):
    assert "default via 10.1.0.254" in out(lab, "ns-int", "ip", "route")
    assert "status: SERVFAIL" in dig(lab, "mx", "example.com", "MX")
    assert dig_short(lab, "mx", "mail.example.net") == "10.1.0.25"  # its own zone answers


def s_resolver(lab):
    assert "nameserver 10.1.0.54" in out(lab, "mx", "cat", "/etc/resolv.conf")
    assert sh(lab, "mx", "dig", "+time=1", "+tries=1", "example.com", "MX").returncode == 9


def s_split(lab):
    assert dig_short(lab, "fw", "mail.example.net") == "203.0.113.25"
    assert dig_short(lab, "fw", "@10.1.0.53", "mail.example.net") == "10.1.0.25"


def s_split_auth(lab):
    assert "nameserver 203.0.113.53" in out(lab, "fw", "cat", "/etc/resolv.conf")
    s_split(lab)


def s_alert_permit(lab):
    assert not tcp_open(lab, "fw", "10.1.0.25")
    assert last_verdict(lab, "10.1.0.1", "10.1.0.25:25") == "D"


def s_alert_dns_permit(lab):
    assert sh(lab, "fw", "dig", "+time=1", "+tries=1", "mail.example.net").returncode == 9
    assert tcp_open(lab, "fw", "10.1.0.25")  # SMTP to the mail server is still permitted


def s_link_down(lab):
    assert "state DOWN" in out(lab, "mx", "ip", "link", "show", "eth0")
    assert not pings(lab, "admin", "10.1.0.25")


def s_fw_lan_down(lab):
    assert "state DOWN" in out(lab, "fw", "ip", "link", "show", "eth1")
    assert not pings(lab, "admin", "10.1.0.1")
    assert pings(lab, "admin", "10.1.0.25")  # the rest of the LAN is fine


def s_fw_ext_down(lab):
    assert "state DOWN" in out(lab, "fw", "ip", "link", "show", "eth0")
    assert not pings(lab, "ext-ws", "203.0.113.1")


def _loss(lab: str, node: str, host: str) -> int:
    p = sh(lab, node, "ping", "-q", "-c", "20", "-i", "0.05", "-W", "1", host)
    return int(re.search(r"(\d+)% packet loss", p.stdout).group(1))


def s_loss(lab):
    assert _loss(lab, "admin", "10.1.0.25") >= 40


def s_fw_lan_loss(lab):
    assert _loss(lab, "admin", "10.1.0.1") >= 40
    assert _loss(lab, "admin", "10.1.0.25") == 0


def s_fw_ext_loss(lab):
    assert _loss(lab, "ext-ws", "203.0.113.1") >= 40
    assert _loss(lab, "admin", "10.1.0.1") == 0


def starttls(lab: str, *args: str) -> str:
    p = sh(lab, "admin", "sh", "-c", "openssl s_client -starttls smtp -connect 10.1.0.25:25 "
           "-verify_return_error -brief \"$@\" </dev/null 2>&1", "sh", *args)
    return p.stdout + f"\nrc={p.returncode}"


def s_cert_expired(lab):
    talk = starttls(lab)
    assert "certificate has expired" in talk and "rc=0" not in talk, talk


def s_cert_wrong_name(lab):
    talk = starttls(lab, "-verify_hostname", "mail.example.net")
    assert "hostname mismatch" in talk and "rc=0" not in talk, talk
    assert "Verification: OK" in starttls(lab)  # the chain itself is fine


def s_tls_not_offered(lab):
    p = sh(lab, "admin", "swaks", "--server", "10.1.0.25", "--tls", "--to",
           "jsmith@example.net", "--from", "a@example.net", "--timeout", "8")
    assert p.returncode != 0 and "STARTTLS" not in (p.stdout.split("250-PIPELINING")[1]
                                                    .split("<-  250 ")[0]), p.stdout
    # mx-ext uses TLS opportunistically in the reference topology: its mail still arrives
    # (the tls-required scenario makes it require TLS: tests/test_lab_mailproto.py)


def s_outbound_refused(lab):
    run_lab("verify", "--lab", lab, "outbound")
    log = out(lab, "mx", "tail", "-n", "30", "/var/log/mail.log")
    assert "Sender address rejected: Access denied" in log, log
    assert last_verdict(lab, "10.1.0.25", "203.0.113.20:25") == "X"


@dataclass
class Case:
    fault: str
    symptom: Callable[[str], None]
    failing: set[str]  # probes that must fail (the others must pass)
    node: str  # the answer key's node (its cause is the one the fault declares)
    params: dict[str, str] = field(default_factory=dict)
    nodes: tuple[str, ...] = ()  # where the change lives, besides the answer's node
    any_of: bool = False  # random loss: at least one of ``failing`` fails
    spool: bool = False  # an alert fault: alerts stay in fw's spool

    @property
    def id(self) -> str:
        return self.fault + "".join(f"[{v}]" for v in self.params.values())


LINK_MX = {"node": "mx", "interface": "eth0"}
CASES = [
    Case("dns-wrong-address", s_wrong_address, {"inbound"}, "ns-ext",
         {"address": "203.0.113.26"}),
    Case("dns-mx-missing", s_mx_missing, {"inbound"}, "ns-ext"),
    Case("dns-mx-no-address", s_mx_no_address, {"inbound"}, "ns-ext",
         {"target": "mx1.example.net."}),
    Case("dns-server-down", s_server_down, {"inbound"}, "ns-ext"),
    Case("dns-lame-delegation", s_lame, {"inbound"}, "dns-tld", {"address": "203.0.113.11"}),
    Case("dns-stale-cache", s_stale, {"inbound"}, "resolver",
         {"node": "resolver", "address": "203.0.113.24", "ttl": "86400"}),
    Case("nat-static-missing", s_static_missing, {"inbound"}, "fw"),
    Case("nat-static-wrong-host", s_static_wrong, {"inbound"}, "fw", {"private": "10.1.0.26"}),
    Case("nat-dynamic-missing", s_dynamic_missing, {"outbound"}, "fw"),
    Case("fw-smtp-permit-missing", s_permit_missing, {"inbound"}, "fw"),
    Case("fw-icmp-blocked", s_icmp, set(), "fw"),
    Case("proxy-server-not-listed", s_proxy_not_listed, {"inbound"}, "fw", {"servers": ""},
         nodes=("ns-ext",)),
    Case("proxy-mode-mismatch", s_mode_static, {"inbound"}, "fw",
         {"dns_points_at": "static-nat"}),
    Case("proxy-mode-mismatch", s_mode_firewall, {"inbound"}, "fw",
         {"dns_points_at": "firewall"}, nodes=("ns-ext",)),
    Case("smtp-service-down", s_smtp_down, {"inbound", "outbound", "alert"}, "mx",
         {"node": "mx"}),
    Case("smtp-relay-refused", s_relay, {"outbound"}, "mx"),
    Case("host-gateway-wrong", s_gateway, {"inbound", "outbound"}, "mx",
         {"node": "mx", "gateway": "10.1.0.254"}),
    Case("host-gateway-wrong", s_dns_gateway, {"outbound"}, "ns-int",
         {"node": "ns-int", "gateway": "10.1.0.254"}),
    Case("host-resolver-wrong", s_resolver, {"outbound"}, "mx", {"nameserver": "10.1.0.54"}),
    Case("dns-no-split-view", s_split, {"alert"}, "fw", {"nameserver": "203.0.113.9"},
         spool=True),
    Case("dns-no-split-view", s_split_auth, {"alert"}, "fw", {"nameserver": "203.0.113.53"},
         spool=True),
    Case("fw-alert-permit-missing", s_alert_permit, {"alert"}, "fw", {"rule": "fw-to-mx"},
         spool=True),
    Case("fw-alert-permit-missing", s_alert_dns_permit, {"alert"}, "fw", {"rule": "fw-dns"},
         spool=True),
    Case("link-down", s_link_down, {"inbound", "outbound", "alert"}, "mx", LINK_MX),
    Case("link-down", s_fw_lan_down, {"inbound", "outbound", "alert"}, "fw",
         {"node": "fw", "interface": "eth1"}),
    Case("link-down", s_fw_ext_down, {"inbound", "outbound"}, "fw",
         {"node": "fw", "interface": "eth0"}),
    Case("link-packet-loss", s_loss, {"inbound", "outbound"}, "mx",
         {**LINK_MX, "percent": "60"}, any_of=True),
    Case("link-packet-loss", s_fw_lan_loss, {"inbound", "outbound"}, "fw",
         {"node": "fw", "interface": "eth1", "percent": "60"}, any_of=True),
    Case("link-packet-loss", s_fw_ext_loss, {"inbound", "outbound"}, "fw",
         {"node": "fw", "interface": "eth0", "percent": "60"}, any_of=True),
    Case("tls-cert-expired", s_cert_expired, set(), "mx", {"days_ago": "3"}),
    Case("tls-cert-wrong-name", s_cert_wrong_name, set(), "mx", {"name": "www.example.org"}),
    Case("smtp-tls-not-offered", s_tls_not_offered, set(), "mx"),
    Case("proxy-outbound-sender-refused", s_outbound_refused, {"outbound"}, "fw",
         {"senders": "example.org"}),
]


# --- the catalog itself (no lab needed) ------------------------------------------------------


def test_every_family_module_contributes_and_is_listed():
    modules = {m.name for m in pkgutil.iter_modules(lab.faults.__path__)
               if m.name not in ("base", "draw", "__init__") and not m.name.startswith("_")}
    listed = {m.__name__.rsplit(".", 1)[1] for m in FAMILIES}
    assert modules == listed
    for name in modules:
        module = importlib.import_module(f"lab.faults.{name}")
        assert module.FAULTS, f"lab/faults/{name}.py contributes no faults"
        for f in module.FAULTS:
            assert CATALOG[f.name] is f
    owners = {type(f).__module__.rsplit(".", 1)[1] for f in CATALOG.values()}
    assert owners <= listed


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_fault_is_described_and_has_default_params(name):
    f = CATALOG[name]
    assert f.name == name and f.family and f.causes
    for text in (f.description, f.symptom):
        assert text.strip() and "\n" not in text
    f.Params()  # every field has a default (None: drawn)
    assert type(f).check_repaired is not Fault.check_repaired, f"{name} has no repair check"


def applies(f: Fault, roles) -> bool:
    """Can ``f`` be drawn on the topology of ``roles`` (it has the roles the fault needs)?"""
    try:
        f.answer(f.resolve(roles), roles)
    except LabError:
        return False
    return True


HERE = sorted(n for n, f in CATALOG.items() if applies(f, ROLES))


@pytest.mark.parametrize("name", HERE)
def test_symptom_renders_from_roles_for_every_variant(name):
    """Symptoms and descriptions quote the topology's own names and addresses: rendered
    with the reference roles and drawn params, no placeholder is left."""
    f = CATALOG[name]
    for variant in f.variants(ROLES):
        params = f.resolve(ROLES, variant)
        for text in (f.render_symptom(ROLES, params), f.render_description(ROLES, params)):
            assert not placeholders(text), text
    assert placeholders(f.symptom), "the symptom names nothing of the topology"


def test_cases_cover_the_catalog_and_every_variant():
    """Every fault that applies to the reference has a case here, for every variant (the
    faults of the isp-relay shape: tests/test_faults_isp.py)."""
    assert {c.fault for c in CASES} == set(HERE)
    for name in HERE:
        f = CATALOG[name]
        params = [c.params for c in CASES if c.fault == name]
        for variant in f.variants(ROLES):
            assert any(all(str(p.get(k)) == str(v) for k, v in variant.items()) for p in params), \
                f"{name}: no lab case for variant {variant}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_answer_key(case):
    f = get_fault(case.fault)
    key = f.answer(f.resolve(ROLES, case.params), ROLES)
    assert (key.cause, key.node) == (f.causes[0].id, case.node)


@pytest.mark.parametrize("name", HERE)
def test_explicit_params_win_over_drawn_ones(name):
    import random

    f = CATALOG[name]
    for seed in range(5):
        drawn = f.draw(random.Random(seed), ROLES)
        again = f.resolve(ROLES, drawn.model_dump(mode="json"), random.Random(seed + 100))
        assert again == drawn


def test_unknown_fault_names_the_catalog():
    with pytest.raises(LabError) as e:
        get_fault("no-such-fault")
    assert "no-such-fault" in e.value.message
    assert "dns-mx-missing" in e.value.hint and "link-down" in e.value.hint


def test_unknown_parameter_is_refused():
    with pytest.raises(ValueError):
        get_fault("dns-wrong-address").Params.model_validate({"adress": "203.0.113.7"})
    with pytest.raises(ValueError):
        get_fault("dns-wrong-address").Params.model_validate({"address": "mail"})


# --- on a running lab ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def running(module_labs) -> dict:
    name = module_labs.up(LAB)
    for _ in range(3):  # the very first resolutions after `lab up` may time out
        results = verify(name)
        if results["inbound"]["passed"] and results["outbound"]["passed"]:
            break
    assert results["inbound"]["passed"] and results["outbound"]["passed"], results
    alerts = "no alerts service" not in results["alert"]["detail"]
    if alerts:
        assert results["alert"]["passed"], results["alert"]
    return {"lab": name, "alerts": alerts, "baseline": surfaces(name)}


def _counted(running: dict) -> set[str]:
    return set(PROBES) if running["alerts"] else {"inbound", "outbound"}


def hidden_from(lab: str, node: str, name: str) -> list[str]:
    """Lines a shell in ``node`` can see that name the fault."""
    script = ("grep -rIl -F -e \"$1\" /etc/bind /etc/netguard /etc/resolv.conf /etc/hosts "
              "/etc/hostname /var/log /var/spool /var/mail 2>/dev/null; "
              "nft list ruleset 2>/dev/null; ps -eo args; ip route; ip link")
    text = out(lab, node, "sh", "-c", script, "sh", name)
    return [ln for ln in text.splitlines()
            if name in ln and "grep -rIl" not in ln and "pytest" not in ln
            and not ln.startswith(("lab ", "sh -c"))]


def exercise(lab: str, case: Case, look: Callable[[str], dict[str, str]],
             baseline: dict[str, str], counted: set[str]) -> None:
    """The life of one fault in a running lab, whatever the topology: revert before apply
    is harmless; apply gives the answer key, the symptom (with a trainee's tools), a repair
    check that says "not repaired", nothing that names the fault, the probes it breaks;
    apply and revert are idempotent, revert restores what ``look`` sees and the repair
    check says "repaired", and every probe passes again."""
    fault(lab, "revert", case.fault, case.params)  # revert without apply: harmless
    assert look(lab) == baseline

    answer = (get_fault(case.fault).causes[0].id, case.node)
    result = fault(lab, "apply", case.fault, case.params)
    assert (result["answer"]["cause"], result["answer"]["node"]) == answer
    applied = look(lab)
    case.symptom(lab)
    check = fault(lab, "check", case.fault, case.params)["repair"]
    assert check["repaired"] is False and check["how"], check
    for node in {case.node, *case.nodes}:
        assert hidden_from(lab, node, case.fault) == [], node

    probes = counted & case.failing if case.any_of else counted
    # under random loss the alert mailer's one session can hang for its whole session
    # timeout and hold every later alert: alerts are left out of those cases
    results = verify(lab, tuple(sorted(probes)))
    failed = {n for n in probes if not results[n]["passed"]}
    if case.any_of:
        assert failed & case.failing, results
    else:
        assert failed == case.failing & probes, results
    if case.spool and "alert" in counted:
        fw = result["answer"]["node"]
        assert out(lab, fw, "ls", "/var/spool/mailq/outgoing/smtp").split()
        assert out(lab, fw, "ls", "/var/spool/mailq/data").split()

    fault(lab, "apply", case.fault, case.params)  # apply twice == apply once
    assert look(lab) == applied
    fault(lab, "revert", case.fault, case.params)
    fault(lab, "revert", case.fault, case.params)
    assert look(lab) == baseline
    check = fault(lab, "check", case.fault, case.params)["repair"]
    assert check["repaired"] is True, check
    results = verify(lab)
    assert all(results[n]["passed"] for n in counted), results


@pytest.mark.root
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_fault(running, case):
    exercise(running["lab"], case, surfaces, running["baseline"], _counted(running))


COMPOSED = [
    ("nat-static-missing", "fw-smtp-permit-missing"),
    ("fw-icmp-blocked", "nat-static-wrong-host"),
    ("fw-alert-permit-missing", "proxy-server-not-listed"),
]


@pytest.mark.root
@pytest.mark.parametrize("first,second", COMPOSED, ids=lambda n: n)
def test_two_faults_compose(running, first, second):
    lab, baseline = running["lab"], running["baseline"]
    fault(lab, "apply", second, {})
    second_alone = surfaces(lab)
    fault(lab, "revert", second, {})
    fault(lab, "apply", first, {})
    first_alone = surfaces(lab)
    fault(lab, "apply", second, {})
    both = surfaces(lab)
    assert both != first_alone and both != second_alone

    fault(lab, "revert", first, {})  # takes back only its own change
    assert surfaces(lab) == second_alone
    fault(lab, "apply", first, {})
    assert surfaces(lab) == both
    fault(lab, "revert", second, {})
    assert surfaces(lab) == first_alone
    fault(lab, "revert", first, {})
    assert surfaces(lab) == baseline
    results = verify(lab)
    assert all(results[n]["passed"] for n in _counted(running)), results
