"""DNS faults on the public side: the org's authoritative data, its server, the
delegation to it, and what the internet's resolver remembers."""
from __future__ import annotations

from dnslib import QTYPE
from pydantic import BaseModel, ConfigDict

from lab.faults._support import (
    MAIL_DOMAIN,
    MAIL_HOST,
    NS_EXT,
    RESOLVER,
    TLD,
    IPv4,
    ZoneFile,
    absolute,
    age_caches,
    baseline_records,
    forget_cached,
    same_name,
)
from lab.faults.base import AnswerKey, Fault, LabContext, NoParams

ZONE_TTL = 3600  # what the org's zone hands out; the caches must forget at least this
DELEGATION_TTL = 86400  # what the TLD hands out for the delegation and its glue


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


async def set_mail_address(lab: LabContext, address: str, only_if: list[str]) -> bool:
    """Point mail.<domain> at ``address`` on ns-ext if it holds one of ``only_if``."""
    zone = ZoneFile(lab, NS_EXT, MAIL_DOMAIN)
    zone.replace(MAIL_HOST, "A", address, when=lambda d: d in only_if)
    if zone.save():
        age_caches(lab, MAIL_DOMAIN, ZONE_TTL)
        return True
    return False


class WrongAddress(Fault):
    name = "dns-wrong-address"
    family = "dns"
    description = "ns-ext publishes a wrong A record for mail.example.net"
    symptom = ("dig mail.example.net from the internet answers an address that is not the "
               "mail server's static NAT; senders' connections go nowhere")

    class Params(_Params):
        address: IPv4 = "203.0.113.26"

    def answer(self, params) -> AnswerKey:
        return AnswerKey("dns-wrong-address", NS_EXT)

    async def apply(self, lab, params) -> None:
        good = baseline_records(lab, NS_EXT, MAIL_DOMAIN, MAIL_HOST, "A")
        await set_mail_address(lab, params.address, only_if=good)

    async def revert(self, lab, params) -> None:
        good = baseline_records(lab, NS_EXT, MAIL_DOMAIN, MAIL_HOST, "A")
        if good:
            await set_mail_address(lab, good[0], only_if=[params.address])


class MxMissing(Fault):
    name = "dns-mx-missing"
    family = "dns"
    description = "the MX record of example.net is gone from ns-ext's zone"
    symptom = "dig example.net MX from the internet gets no answer; senders bounce or defer"
    Params = NoParams

    def answer(self, params) -> AnswerKey:
        return AnswerKey("dns-mx-missing", NS_EXT)

    async def apply(self, lab, params) -> None:
        zone = ZoneFile(lab, NS_EXT, MAIL_DOMAIN)
        zone.remove("@", "MX")
        if zone.save():
            age_caches(lab, MAIL_DOMAIN, ZONE_TTL)

    async def revert(self, lab, params) -> None:
        zone = ZoneFile(lab, NS_EXT, MAIL_DOMAIN)
        if zone.find("@", "MX"):
            return  # someone (an admin, another fault) has an MX there: not ours to touch
        for data in baseline_records(lab, NS_EXT, MAIL_DOMAIN, "@", "MX"):
            zone.add("@", "MX", data, after=("example.net.", "NS"))
        if zone.save():
            age_caches(lab, MAIL_DOMAIN, ZONE_TTL)


class MxNoAddress(Fault):
    name = "dns-mx-no-address"
    family = "dns"
    description = "the MX of example.net names a host that has no A record"
    symptom = ("dig example.net MX answers a mail host name, but dig on that name gives "
               "NXDOMAIN; senders bounce with 'Host not found'")

    class Params(_Params):
        target: str = "mx1.example.net."

    def answer(self, params) -> AnswerKey:
        return AnswerKey("dns-mx-no-address", NS_EXT)

    def _data(self, lab, params) -> tuple[list[str], list[str]]:
        """(healthy MX data, the broken data)."""
        good = baseline_records(lab, NS_EXT, MAIL_DOMAIN, "@", "MX")
        bad = [f"{d.split()[0]} {absolute(params.target, MAIL_DOMAIN)}" for d in good]
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
        zone = ZoneFile(lab, NS_EXT, MAIL_DOMAIN)
        origin = zone.origin
        for o, n in zip(old, new):
            pref, target = o.split()
            zone.replace("@", "MX", n, when=lambda d, p=pref, t=target: len(d.split()) == 2
                         and d.split()[0] == p and same_name(d.split()[1], t, origin))
        if zone.save():
            age_caches(lab, MAIL_DOMAIN, ZONE_TTL)


class ServerDown(Fault):
    name = "dns-server-down"
    family = "dns"
    description = "ns-ext's name server is not running"
    symptom = ("dig @203.0.113.53 example.net SOA times out; the resolver answers SERVFAIL "
               "for example.net names")
    Params = NoParams

    def answer(self, params) -> AnswerKey:
        return AnswerKey("dns-server-down", NS_EXT)

    async def apply(self, lab, params) -> None:
        svc = lab.service(NS_EXT, "dns")
        await svc.stop()  # idempotent: a stopped server just stays stopped
        age_caches(lab, MAIL_DOMAIN, ZONE_TTL)

    async def revert(self, lab, params) -> None:
        svc = lab.service(NS_EXT, "dns")
        if not await svc.healthy():
            await svc.stop()
            await svc.start()


class LameDelegation(Fault):
    name = "dns-lame-delegation"
    family = "dns"
    description = ("the net. servers delegate example.net to an address that is not "
                   "authoritative for it (wrong glue for ns.example.net)")
    symptom = ("the resolver answers SERVFAIL for example.net names; dig +trace shows the "
               "delegation going to a server that does not answer authoritatively")

    class Params(_Params):
        address: IPv4 = "203.0.113.11"

    def answer(self, params) -> AnswerKey:
        return AnswerKey("dns-lame-delegation", TLD)

    async def _set(self, lab, new: str, only_if: list[str]) -> None:
        zone = ZoneFile(lab, TLD, "net")
        zone.replace("ns.example", "A", new, when=lambda d: d in only_if)
        if zone.save():
            age_caches(lab, MAIL_DOMAIN, DELEGATION_TTL)

    async def apply(self, lab, params) -> None:
        good = baseline_records(lab, TLD, "net", "ns.example", "A")
        await self._set(lab, params.address, good)

    async def revert(self, lab, params) -> None:
        good = baseline_records(lab, TLD, "net", "ns.example", "A")
        if good:
            await self._set(lab, good[0], [params.address])


class StaleCache(Fault):
    name = "dns-stale-cache"
    family = "dns"
    description = ("the internet resolver holds an old A record for mail.example.net with a "
                   "one-day TTL, although ns-ext publishes the right one")
    symptom = ("dig mail.example.net through the resolver answers an old address with a huge "
               "TTL; dig @203.0.113.53 answers the right one")

    class Params(_Params):
        address: IPv4 = "203.0.113.24"
        ttl: int = 86400

    def answer(self, params) -> AnswerKey:
        return AnswerKey("dns-stale-cache", RESOLVER)

    async def apply(self, lab, params) -> None:
        cache = lab.service(RESOLVER, "dns").cache
        name = f"{MAIL_HOST}.{MAIL_DOMAIN}"
        held = cache.get(name, QTYPE.A) or []
        if [str(rr.rdata) for rr in held] == [params.address]:
            return
        cache.seed(name, "A", params.address, ttl=params.ttl)

    async def revert(self, lab, params) -> None:
        forget_cached(lab, RESOLVER, f"{MAIL_HOST}.{MAIL_DOMAIN}", QTYPE.A, [params.address])


FAULTS = [WrongAddress(), MxMissing(), MxNoAddress(), ServerDown(), LameDelegation(),
          StaleCache()]
