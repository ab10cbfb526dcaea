"""Faults of the firewall's SMTP proxy: its mode against the address DNS publishes, and
its list of mail servers ("Inbound To").

A repair is judged the way a sender would: a message sent from outside to the address
the public DNS publishes for the mail host is accepted again.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from lab.errors import LabError
from lab.faults._checks import dns_query, outbound_repaired, smtp_repair
from lab.faults._support import IPv4, baseline_firewall, firewall_config, restore_item, set_firewall
from lab.faults.base import Cause, Fault, LabContext, Repair
from lab.faults.dns import good_addresses, set_mail_address
from lab.faults.nat import baseline_rule, smtp_in_rule


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


def fw_address(lab: LabContext) -> str:
    return lab.roles.need("fw_public")


async def published_accepts(lab: LabContext) -> Repair:
    """A message sent from outside to the address the public DNS publishes for the mail
    host is accepted: whatever the proxy mode, DNS and the firewall agree again."""
    roles = lab.roles
    client = roles.need("outside_client")
    answer = await dns_query(lab, client, roles.need("public_dns_address"),
                             roles.need("mail_host"), "A", recurse=False)
    if not answer.answers:
        return Repair(False, f"{roles.mail_host} A at {roles.public_dns}: {answer.status}")
    address = answer.answers[0]
    rcpt = f"{roles.need('mailbox')}@{roles.need('mail_domain')}"
    sender = f"{roles.sender_mailbox or 'test'}@{roles.sender_domain or 'invalid'}"
    return await smtp_repair(lab, client, address, sender, rcpt,
                             f"{roles.mail_host} is published as {address}; a message from "
                             f"{client} to {rcpt} through {address}:25")


class ProxyServerNotListed(Fault):
    name = "proxy-server-not-listed"
    family = "proxy"
    causes = (Cause("proxy-server-not-listed", "mail server not in proxy list",
                    "the proxy runs \"Inbound To\" without the mail server in its servers list",
                    "firewall"),)
    where = "firewall"
    description = ("the SMTP proxy runs 'Inbound To' (DNS points at the firewall's address) "
                   "but the mail server is not in its servers list")
    symptom = ("${roles.mail_host} resolves to ${roles.fw_public}; the proxy there accepts "
               "the session and answers 451 'no mail server reachable'; netguard -An shows D")

    class Params(_Params):
        servers: list[IPv4] | None = None

        @field_validator("servers", mode="before")
        @classmethod
        def _split(cls, v: object) -> object:
            if isinstance(v, str):  # --param servers=10.1.0.26,10.1.0.27
                return [s for s in (p.strip() for p in v.split(",")) if s]
            return v

    def drawn(self, rng, roles) -> dict:
        """An empty list, or another inside host that does not take mail."""
        others = [[roles.internal_client_address]] if roles.internal_client_address else []
        return {"servers": rng.choice([[], *others])}

    def validate(self, params, roles) -> None:
        if roles.need("inbound_private") in (params.servers or []):
            raise LabError(f"servers must not list the mail server {roles.inbound_private}")

    async def apply(self, lab, params) -> None:
        self.validate(params, lab.roles)
        config = firewall_config(lab)
        proxy = config.proxy.model_copy(update={"mode": "inbound-to", "servers": params.servers})
        await set_firewall(lab, config.model_copy(update={"proxy": proxy}))
        await set_mail_address(lab, fw_address(lab), only_if=good_addresses(lab))

    async def revert(self, lab, params) -> None:
        config = firewall_config(lab)
        if config.proxy.mode == "inbound-to" and config.proxy.servers == params.servers:
            base = baseline_firewall(lab).proxy
            proxy = config.proxy.model_copy(update={"mode": base.mode, "servers": base.servers})
            await set_firewall(lab, config.model_copy(update={"proxy": proxy}))
        good = good_addresses(lab)
        if good:
            await set_mail_address(lab, good[0], only_if=[fw_address(lab)])

    async def check_repaired(self, lab, params) -> Repair:
        return await published_accepts(lab)


class ProxyModeMismatch(Fault):
    name = "proxy-mode-mismatch"
    family = "proxy"
    causes = (Cause("proxy-mode-mismatch", "proxy mode mismatch",
                    "the SMTP proxy's mode does not match the address DNS points at",
                    "firewall"),)
    where = "firewall"
    key_params = ("dns_points_at",)
    description = ("the proxy mode does not match what DNS points at: 'Inbound To' on the "
                   "firewall (and the permit rule removed) while ${roles.mail_host} still "
                   "points at the static-NAT address, or DNS pointing at the firewall's own "
                   "address while the proxy is off")
    symptom = ("dns_points_at=static-nat: SMTP to ${roles.inbound_public} is denied (D) while the "
               "firewall's ${roles.fw_public}:25 answers; dns_points_at=firewall: "
               "${roles.mail_host} resolves to ${roles.fw_public} where nothing accepts SMTP")

    class Params(_Params):
        dns_points_at: Literal["static-nat", "firewall"] | None = None

    def variants(self, roles) -> list[dict]:
        return [{"dns_points_at": "static-nat"}, {"dns_points_at": "firewall"}]

    async def apply(self, lab, params) -> None:
        if params.dns_points_at == "static-nat":
            config = firewall_config(lab)
            proxy = config.proxy.model_copy(update={"mode": "inbound-to"})
            rule = smtp_in_rule(lab)
            rules = [r for r in config.rules if r.name != rule]
            await set_firewall(lab, config.model_copy(update={"proxy": proxy, "rules": rules}))
        else:
            await set_mail_address(lab, fw_address(lab), only_if=good_addresses(lab))

    async def revert(self, lab, params) -> None:
        if params.dns_points_at == "static-nat":
            config = firewall_config(lab)
            base = baseline_firewall(lab)
            if config.proxy.mode == "inbound-to" and config.proxy.servers == base.proxy.servers:
                proxy = config.proxy.model_copy(update={"mode": base.proxy.mode})
                config = config.model_copy(update={"proxy": proxy})
            rules = restore_item(config.rules, base.rules, baseline_rule(lab, smtp_in_rule(lab)),
                                 key=lambda r: r.name)
            await set_firewall(lab, config.model_copy(update={"rules": rules}))
        else:
            good = good_addresses(lab)
            if good:
                await set_mail_address(lab, good[0], only_if=[fw_address(lab)])

    async def check_repaired(self, lab, params) -> Repair:
        return await published_accepts(lab)


# sender domains a misconfigured outbound proxy may allow instead (RFC 2606 names)
OTHER_DOMAINS = ("corp.example", "partners.example", "branch.example")


class OutboundSenderRefused(Fault):
    name = "proxy-outbound-sender-refused"
    family = "proxy"
    causes = (Cause("proxy-outbound-sender-refused", "outbound proxy refuses senders",
                    "the SMTP proxy relaying outbound mail does not accept the company's "
                    "senders", "firewall"),)
    where = "firewall"
    description = ("${roles.firewall}'s SMTP proxy relays outbound mail, but its allowed sender "
                   "domains (${params.senders}) do not include ${roles.mail_domain}")
    symptom = ("mail from the LAN to the internet bounces: ${roles.mail_server}'s mail.log "
               "shows '554 5.7.1 <...@${roles.mail_domain}>: Sender address rejected: Access "
               "denied' from the remote host; netguard -An shows X lines for "
               "${roles.mail_server}'s outbound sessions")

    class Params(_Params):
        senders: list[str] | None = None

        @field_validator("senders", mode="before")
        @classmethod
        def _split(cls, v: object) -> object:
            if isinstance(v, str):  # --param senders=example.org,example.com
                return [s for s in (p.strip() for p in v.split(",")) if s]
            return v

    def drawn(self, rng, roles) -> dict:
        return {"senders": [rng.choice(OTHER_DOMAINS)]}

    def validate(self, params, roles) -> None:
        if params.senders is not None and roles.mail_domain in params.senders:
            raise LabError(f"senders must not include the mail domain {roles.mail_domain}")

    async def apply(self, lab, params) -> None:
        config = firewall_config(lab)
        proxy = config.proxy.model_copy(update={"outbound": True,
                                                "outbound_senders": params.senders})
        await set_firewall(lab, config.model_copy(update={"proxy": proxy}))

    async def revert(self, lab, params) -> None:
        config = firewall_config(lab)
        if config.proxy.outbound_senders != params.senders:
            return
        base = baseline_firewall(lab).proxy
        proxy = config.proxy.model_copy(update={"outbound": base.outbound,
                                                "outbound_senders": base.outbound_senders})
        await set_firewall(lab, config.model_copy(update={"proxy": proxy}))

    async def check_repaired(self, lab, params) -> Repair:
        """Mail from the company leaves again: the mail server's SMTP session to its next
        hop (through the firewall, and its proxy if it relays outbound) accepts a message
        from the mail domain."""
        return await outbound_repaired(lab)


FAULTS = [ProxyServerNotListed(), ProxyModeMismatch(), OutboundSenderRefused()]
