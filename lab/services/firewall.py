"""The firewall service: loads the rendered nftables ruleset in the node, runs the conn log.

``run(argv, stdin) -> (rc, stdout, stderr)`` executes a command inside the node (the
engine passes one; tests use ``ip netns exec``). The ruleset is checked with
``nft -c -f -`` before it is loaded with ``nft -f -``, so a bad ruleset leaves the node's
current rules untouched.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable

from lab.errors import LabError
from lab.model.firewall import FirewallConfig
from lab.protocols.fwlog import ConnLog, SourceNat, StaticEntry, log_error
from lab.protocols.nftrules import FILTER_TABLE, NAT_TABLE, FirewallAddresses, render_ruleset
from lab.services.base import NodeContext, Service

Runner = Callable[[list[str], "str | None"], tuple[int, str, str]]

RULESET_PATH = "/etc/netguard/ruleset.nft"


class FirewallService(Service):
    kind = "firewall"

    def __init__(
        self,
        node: NodeContext,
        config: FirewallConfig,
        run: Runner,
        external_if: str,
        internal_if: str,
        fw_addresses: FirewallAddresses,
        dmz_if: str | None = None,
    ) -> None:
        super().__init__(node)
        self.config = config
        self.run = run
        self.external_if = external_if
        self.internal_if = internal_if
        self.dmz_if = dmz_if
        self.fw_addresses = fw_addresses
        self.conn_log = ConnLog(
            node,
            group=config.log_group,
            static_nat=[StaticEntry(s.public, s.private) for s in config.static_nat],
            snat=self._source_nat(config),
        )

    def _source_nat(self, config: FirewallConfig) -> SourceNat:
        nets = tuple(ipaddress.IPv4Network(n) for n in self.fw_addresses.internal_networks)
        address = self.fw_addresses.external_address if config.dynamic_nat else None
        return SourceNat(nets, address or "")

    def render(self, config: FirewallConfig | None = None) -> str:
        return render_ruleset(config or self.config, self.external_if, self.internal_if,
                              self.fw_addresses, self.dmz_if)

    def load(self, config: FirewallConfig | None = None) -> None:
        """Check and load the ruleset for ``config`` (default: the current one) atomically.

        Faults and fixes call this with a changed config; on any error the old rules stay.
        """
        config = config or self.config
        text = self.render(config)
        rc, _out, err = self.run(["nft", "-c", "-f", "-"], text)
        if rc != 0:
            log_error(self.node, "ruleset", f"rejected by nftables, old rules kept: {err.strip()}")
            raise LabError(f"{self.node.name}: nftables rejected the ruleset: {err.strip()}")
        rc, _out, err = self.run(["nft", "-f", "-"], text)
        if rc != 0:
            log_error(self.node, "ruleset", f"loading failed: {err.strip()}")
            raise LabError(f"{self.node.name}: loading the ruleset failed: {err.strip()}")
        self.config = config
        self.conn_log.static_nat = [StaticEntry(s.public, s.private) for s in config.static_nat]
        self.conn_log.snat = self._source_nat(config)
        path = self.node.path(RULESET_PATH)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    async def start(self) -> None:
        self.load()
        await self.conn_log.start()

    async def stop(self) -> None:
        await self.conn_log.stop()
        text = f"delete table inet {FILTER_TABLE}\ndelete table ip {NAT_TABLE}\n"
        self.run(["nft", "-f", "-"], text)

    async def healthy(self) -> bool:
        if not self.conn_log.running:
            return False
        rc, _out, _err = self.run(["nft", "list", "table", "inet", FILTER_TABLE], None)
        return rc == 0
