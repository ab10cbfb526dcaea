"""Faults that keep the firewall's alert mails in its spool: no split DNS view for the
firewall, and no permit rule from the firewall to the mail server."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from lab.faults._support import FW, IPv4, read_nameservers, write_nameservers
from lab.faults.base import AnswerKey, Fault
from lab.faults.nat import _RuleMissing


class NoSplitView(Fault):
    name = "dns-no-split-view"
    family = "alerts"
    description = ("the firewall resolves through the internet resolver, so it gets the "
                   "mail server's public address instead of the private one")
    symptom = ("dig mail.example.net on fw answers 203.0.113.25; alerts stay in "
               "/var/spool/mailq/outgoing/smtp and /var/spool/mailq/data on fw")

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        nameserver: IPv4 = "203.0.113.9"

    def answer(self, params) -> AnswerKey:
        return AnswerKey("dns-no-split-view", FW)

    async def apply(self, lab, params) -> None:
        write_nameservers(lab, FW, [params.nameserver])

    async def revert(self, lab, params) -> None:
        _path, _lines, current = read_nameservers(lab, FW)
        if current == [params.nameserver]:
            write_nameservers(lab, FW, [str(a) for a in lab.topo.nodes[FW].nameservers])


class AlertPermitMissing(_RuleMissing):
    name = "fw-alert-permit-missing"
    family = "alerts"
    cause = "fw-alert-permit-missing"
    rule = "fw-to-mx"
    description = "the permit rule from the firewall to the mail server's SMTP port is gone"
    symptom = ("nc/telnet from fw to 10.1.0.25:25 times out; netguard -An shows D for it; "
               "alerts stay in /var/spool/mailq on fw")


FAULTS = [NoSplitView(), AlertPermitMissing()]
