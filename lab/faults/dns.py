"""DNS faults on the public side: the org's authoritative data, its server, the
delegation to it, and what the internet's resolver remembers.

Names and addresses come from the topology's roles: the mail domain and its mail host,
the public authoritative server (``public_dns``), the parent zone's server, the outside
resolvers. A repair is judged by what the authoritative server publishes *and* what every
outside resolver now hands out: a record fixed in the zone but still cached wrong is not
repaired yet.
"""
from __future__ import annotations

import asyncio

from dnslib import QTYPE
from pydantic import BaseModel, ConfigDict

from lab.errors import LabError
from lab.faults._checks import DnsViews, dns_query, public_views
from lab.faults._support import (
    IPv4,
    ZoneFile,
    absolute,
    age_caches,
    baseline_records,
    forget_cached,
    same_name,
    unused_address,
)
from lab.faults.base import AnswerKey, Cause, Fault, LabContext, NoParams, Repair

ZONE_TTL = 3600  # what the org's zone hands out; the caches must forget at least this
DELEGATION_TTL = 86400  # what the TLD hands out for the delegation and its glue
MX_NAMES = ("mx1", "mx2", "mx0", "smtp", "mail1", "relay")  # plausible, non-existent MX hosts


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _host(lab: LabContext) -> str:
    """The mail host as an absolute name (mail.example.net.)."""
    return absolute(lab.roles.need("mail_host"), ".")


def _domain(lab: LabContext) -> str:
    return lab.roles.need("mail_domain")


def good_addresses(lab: LabContext) -> list[str]:
    """The mail host's A data as the topology publishes it (the healthy baseline)."""
    return baseline_records(lab, lab.roles.need("public_dns"), _domain(lab), _host(lab), "A")


async def set_mail_address(lab: LabContext, address: str, only_if: list[str]) -> bool:
    """Point the mail host at ``address`` on the public DNS if it holds one of ``only_if``."""
    zone = ZoneFile(lab, lab.roles.need("public_dns"), _domain(lab))
    zone.replace(_host(lab), "A", address, when=lambda d: d in only_if)
    if zone.save():
        age_caches(lab, _domain(lab), ZONE_TTL)
        return True
    return False


def _every_view(views: DnsViews, ok) -> Repair:
    return Repair(views.all(ok), f"{views.name} {views.rtype}: {views.describe()}")


async def mail_address_right(lab: LabContext) -> Repair:
    """The mail host's A record as published, in every view."""
    views = await public_views(lab, lab.roles.need("mail_host"), "A")
    good = tuple(sorted(good_addresses(lab)))
    repair = _every_view(views, lambda a: a.answers == good)
    return Repair(repair.repaired, f"{repair.how} (the topology publishes {', '.join(good)})")


class WrongAddress(Fault):
    name = "dns-wrong-address"
    family = "dns"
    causes = (Cause("dns-wrong-address", "wrong public address",
                    "the public A record of the mail host points at a wrong address", "dns"),)
    where = "public_dns"
    description = "${roles.public_dns} publishes a wrong A record for ${roles.mail_host}"
    symptom = ("dig ${roles.mail_host} from the internet answers ${params.address}, not the "
               "static NAT ${roles.inbound_public}; senders' connections go nowhere")

    class Params(_Params):
        address: IPv4 | None = None

    def drawn(self, rng, roles) -> dict:
        return {"address": unused_address(rng, roles, roles.need("fw_external_subnet"))}

    async def apply(self, lab, params) -> None:
        await set_mail_address(lab, params.address, only_if=good_addresses(lab))

    async def revert(self, lab, params) -> None:
        good = good_addresses(lab)
        if good:
            await set_mail_address(lab, good[0], only_if=[params.address])

    async def check_repaired(self, lab, params) -> Repair:
        return await mail_address_right(lab)


class MxMissing(Fault):
    name = "dns-mx-missing"
    family = "dns"
    causes = (Cause("dns-mx-missing", "MX record missing",
                    "the domain publishes no MX record", "dns"),)
    where = "public_dns"
    description = "the MX record of ${roles.mail_domain} is gone from ${roles.public_dns}'s zone"
    symptom = ("dig ${roles.mail_domain} MX from the internet gets no answer; senders bounce "
               "or defer")
    Params = NoParams

    async def apply(self, lab, params) -> None:
        zone = ZoneFile(lab, lab.roles.need("public_dns"), _domain(lab))
        zone.remove("@", "MX")
        if zone.save():
            age_caches(lab, _domain(lab), ZONE_TTL)

    async def revert(self, lab, params) -> None:
        node, domain = lab.roles.need("public_dns"), _domain(lab)
        zone = ZoneFile(lab, node, domain)
        if zone.find("@", "MX"):
            return  # someone (an admin, another fault) has an MX there: not ours to touch
        for data in baseline_records(lab, node, domain, "@", "MX"):
            anchor = "MX" if zone.find("@", "MX") else "NS"
            zone.add("@", "MX", data, after=(f"{domain}.", anchor))
        if zone.save():
            age_caches(lab, domain, ZONE_TTL)

    async def check_repaired(self, lab, params) -> Repair:
        views = await public_views(lab, _domain(lab), "MX")
        return _every_view(views, lambda a: bool(a.answers))


class MxNoAddress(Fault):
    name = "dns-mx-no-address"
    family = "dns"
    causes = (Cause("dns-mx-no-address", "MX host has no address",
                    "the MX record names a host that has no A record", "dns"),)
    where = "public_dns"
    description = "the MX of ${roles.mail_domain} names a host that has no A record"
    symptom = ("dig ${roles.mail_domain} MX answers ${params.target}, but dig on that name "
               "gives NXDOMAIN; senders bounce with 'Host not found'")

    class Params(_Params):
        target: str | None = None

    def drawn(self, rng, roles) -> dict:
        taken = {roles.mail_host, roles.mail_domain}
        names = [f"{n}.{roles.need('mail_domain')}." for n in MX_NAMES]
        return {"target": rng.choice([n for n in names if n.rstrip(".") not in taken])}

    def _data(self, lab, params) -> tuple[list[str], list[str]]:
        """(healthy MX data, the broken data)."""
        good = baseline_records(lab, lab.roles.need("public_dns"), _domain(lab), "@", "MX")
        bad = [f"{d.split()[0]} {absolute(params.target, _domain(lab))}" for d in good]
        return good, bad

    async def apply(self, lab, params) -> None:
        good, bad = self._data(lab, params)
        self._swap(lab, good, bad)

    async def revert(self, lab, params) -> None:
        good, bad = self._data(lab, params)
        self._swap(lab, bad, good)

    @staticmethod
    def _swap(lab, old: list[str], new: list[str]) -> None:
        """Replace each MX record ``old[i]`` by ``new[i]`` (same preference)."""
        zone = ZoneFile(lab, lab.roles.need("public_dns"), _domain(lab))
        origin = zone.origin
        for o, n in zip(old, new):
            pref, target = o.split()
            zone.replace("@", "MX", n, when=lambda d, p=pref, t=target: len(d.split()) == 2
                         and d.split()[0] == p and same_name(d.split()[1], t, origin))
        if zone.save():
            age_caches(lab, _domain(lab), ZONE_TTL)

    async def check_repaired(self, lab, params) -> Repair:
        """Every view's MX names hosts that have an address in that same view."""
        views = await public_views(lab, _domain(lab), "MX")
        client = lab.roles.need("outside_client")
        lines, good = [], True
        for view in views.views:
            targets = [a.split()[-1] for a in view.answer.answers]
            found = await asyncio.gather(*(dns_query(lab, client, view.server, t, "A",
                                                     recurse=view.recurse) for t in targets))
            good &= bool(targets) and all(a.answers for a in found)
            lines.append(f"{view.label}: MX " + (", ".join(
                f"{t} -> {a.text()}" for t, a in zip(targets, found)) or view.answer.status))
        return Repair(good, f"{views.name} MX: " + "; ".join(lines))


class ServerDown(Fault):
    name = "dns-server-down"
    family = "dns"
    causes = (Cause("dns-server-down", "authoritative DNS not answering",
                    "the domain's authoritative name server does not answer queries", "dns"),)
    where = "public_dns"
    description = "${roles.public_dns}'s name server is not running"
    symptom = ("dig @${roles.public_dns_address} ${roles.mail_domain} SOA times out; the "
               "resolver answers SERVFAIL for ${roles.mail_domain} names")
    Params = NoParams

    async def apply(self, lab, params) -> None:
        svc = lab.service(lab.roles.need("public_dns"), "dns")
        await svc.stop()  # idempotent: a stopped server just stays stopped
        age_caches(lab, _domain(lab), ZONE_TTL)

    async def revert(self, lab, params) -> None:
        svc = lab.service(lab.roles.need("public_dns"), "dns")
        if not await svc.healthy():
            await svc.stop()
            await svc.start()

    async def check_repaired(self, lab, params) -> Repair:
        roles = lab.roles
        soa = await dns_query(lab, roles.need("outside_client"), roles.need("public_dns_address"),
                              _domain(lab), "SOA", recurse=False)
        views = await public_views(lab, roles.need("mail_host"), "A")
        answered = soa.status == "NOERROR" and soa.aa
        resolved = views.all(lambda a: a.status == "NOERROR")
        return Repair(answered and resolved,
                      f"SOA {_domain(lab)} at {roles.public_dns_address}: "
                      f"{'answered authoritatively' if answered else soa.status}; "
                      f"{views.name} A: {views.describe()}")


class LameDelegation(Fault):
    name = "dns-lame-delegation"
    family = "dns"
    causes = (Cause("dns-lame-delegation", "lame delegation",
                    "the parent zone delegates the domain to a server that is not "
                    "authoritative for it", "dns"),)
    where = "parent_dns"
    description = ("the ${roles.parent_zone}. servers delegate ${roles.mail_domain} to "
                   "${params.address}, which is not authoritative for it (wrong glue)")
    symptom = ("the resolver answers SERVFAIL for ${roles.mail_domain} names; dig +trace shows "
               "the delegation going to ${params.address}, which does not answer "
               "authoritatively")

    class Params(_Params):
        address: IPv4 | None = None

    def drawn(self, rng, roles) -> dict:
        """Another authoritative server of the internet (the root's, the parent's): it
        answers, but not with authority for the domain."""
        lame = sorted({a for a in (roles.root_dns_address, roles.parent_dns_address)
                       if a and a != roles.public_dns_address})
        return {"address": rng.choice(lame)} if lame else {}

    @staticmethod
    def _glue(lab) -> tuple[str, str, str, list[str]]:
        """(parent node, parent zone, the glue's owner, its healthy data)."""
        roles = lab.roles
        parent, zone = roles.need("parent_dns"), roles.need("parent_zone")
        domain = absolute(_domain(lab), ".")
        for target in baseline_records(lab, parent, zone, domain, "NS"):
            good = baseline_records(lab, parent, zone, target, "A")
            if good:
                return parent, zone, absolute(target, "."), good
        raise LabError(f"topology {lab.topo.name}: the {zone} zone has no glue for "
                       f"{domain}'s name servers")

    async def _set(self, lab, new: str, only_if: list[str]) -> None:
        parent, zone_name, owner, _good = self._glue(lab)
        zone = ZoneFile(lab, parent, zone_name)
        zone.replace(owner, "A", new, when=lambda d: d in only_if)
        if zone.save():
            age_caches(lab, _domain(lab), DELEGATION_TTL)

    async def apply(self, lab, params) -> None:
        await self._set(lab, params.address, self._glue(lab)[3])

    async def revert(self, lab, params) -> None:
        await self._set(lab, self._glue(lab)[3][0], [params.address])

    async def check_repaired(self, lab, params) -> Repair:
        roles = lab.roles
        _parent, _zone, owner, good = self._glue(lab)
        referral = await dns_query(lab, roles.need("outside_client"),
                                   roles.need("parent_dns_address"), _domain(lab), "NS",
                                   recurse=False)
        views = await public_views(lab, roles.need("mail_host"), "A")
        glue_ok = sorted(referral.glue) == sorted(good)
        resolved = views.all(lambda a: a.status == "NOERROR")
        return Repair(glue_ok and resolved,
                      f"{roles.parent_dns} refers {_domain(lab)} to "
                      f"{', '.join(referral.glue) or referral.status} ({owner} should be "
                      f"{', '.join(good)}); {views.name} A: {views.describe()}")


class StaleCache(Fault):
    name = "dns-stale-cache"
    family = "dns"
    causes = (Cause("dns-stale-cache", "stale cached record",
                    "a resolver keeps serving an outdated record from its cache", "dns"),)
    key_params = ("node",)
    description = ("the resolver ${params.node} holds an old A record for "
                   "${roles.mail_host} with a long TTL, although ${roles.public_dns} "
                   "publishes the right one")
    symptom = ("dig ${roles.mail_host} through ${params.node} answers ${params.address} "
               "with a TTL of ${params.ttl}; dig @${roles.public_dns_address} answers the "
               "right one")

    class Params(_Params):
        node: str | None = None  # the resolver holding the old record
        address: IPv4 | None = None
        ttl: int | None = None

    def variants(self, roles) -> list[dict]:
        return [{"node": r} for r in roles.public_resolvers] or [{}]

    def drawn(self, rng, roles) -> dict:
        return {"address": unused_address(rng, roles, roles.need("fw_external_subnet")),
                "ttl": rng.choice([43200, 86400, 172800])}

    def answer(self, params, roles) -> AnswerKey:
        return AnswerKey(self.causes[0].id, params.node or roles.need("public_resolver"))

    async def apply(self, lab, params) -> None:
        cache = lab.service(self.answer(params, lab.roles).node, "dns").cache
        name = lab.roles.need("mail_host")
        held = cache.get(name, QTYPE.A) or []
        if [str(rr.rdata) for rr in held] == [params.address]:
            return
        cache.seed(name, "A", params.address, ttl=params.ttl)

    async def revert(self, lab, params) -> None:
        forget_cached(lab, self.answer(params, lab.roles).node, lab.roles.need("mail_host"),
                      QTYPE.A, [params.address])

    async def check_repaired(self, lab, params) -> Repair:
        return await mail_address_right(lab)


FAULTS = [WrongAddress(), MxMissing(), MxNoAddress(), ServerDown(), LameDelegation(),
          StaleCache()]
