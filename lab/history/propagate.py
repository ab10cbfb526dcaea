"""A changed zone shows at once in the lab's resolvers, as the faults' own changes do.

The history's traffic keeps the resolvers' caches warm, as real traffic does: every message
to the mail domain has the internet's resolver cache its MX and A records for their TTL.
A trainee who repairs a zone file would then wait out that TTL (an hour, a day for a
delegation) before mail flows and the repair check sees it; without history the caches were
cold and the repair showed at once. So when a zone file is reloaded, every resolver of the
lab forgets what it cached at or below that zone within the zone's longest TTL, as the DNS
faults do when they change a zone (``age_caches``). A record planted with a longer TTL (the
stale-cache fault) stays: that one must be flushed by hand.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.protocols.dnszones import ZoneSlot
    from lab.protocols.zonedata import ZoneData
    from lab.services.dns import DnsService
    from lab.services.host import ServiceHost


def longest_ttl(data: ZoneData) -> int:
    """The longest time a resolver may keep anything of the zone: its records' TTLs and
    its negative-caching time (the SOA minimum)."""
    ttls = [rr.ttl for rr in data.records]
    ttls.append(min(data.soa.ttl, data.soa.rdata.times[4]))
    return max(ttls)


def propagate_zone_changes(host: ServiceHost) -> None:
    """Hook every DNS service's zones: a reload ages every resolver's cache under them."""
    services: list[DnsService] = [svc for _, svc in host.all() if svc.kind == "dns"]
    resolvers = [svc for svc in services if svc.resolver is not None]

    def changed(slot: ZoneSlot) -> None:
        ttl = longest_ttl(slot.data)
        for svc in resolvers:
            svc.cache.expire(str(slot.data.origin), ttl + 1)

    for svc in services:
        svc.zone_set.on_change.append(changed)

