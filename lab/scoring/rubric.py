"""The rubric: how many points each part of an attempt is worth.

The defaults add up to 100 for a perfect attempt: 50 for the diagnoses (split evenly over
the faults), 25 for a fix the probes confirm, 25 for following the method (10 for a DNS
lookup before looking at the firewall, 5 for using enough distinct tools, 10 for
visiting the nodes on the faults' paths). Penalties are subtracted from that. A scenario
file overrides any weight under its ``rubric:`` key.

Time over the limit costs ``overtime_per_minute`` per started minute, at most
``overtime_max``: linear so that a minute late is not punished like an hour late, capped
so that a slow but correct attempt still passes.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DNS_TOOLS = ["dig", "nslookup", "host", "drill", "delv"]
FIREWALL_TOOLS = ["nft", "netguard", "iptables"]


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    diagnosis: int = Field(50, ge=0, description="points for all faults diagnosed right")
    partial_fraction: float = Field(0.5, ge=0, le=1,
                                    description="share of a fault's points for a partial")
    fix: int = Field(25, ge=0, description="points when every probe passes at the end")
    dns_first: int = Field(10, ge=0, description="a DNS lookup before any firewall look")
    tools: int = Field(5, ge=0, description="at least min_tools distinct tools used")
    min_tools: int = Field(3, ge=1)
    path_nodes: int = Field(10, ge=0, description="commands run on the faults' path nodes")
    wrong_submission: int = Field(5, ge=0, description="cost of each wrong submission")
    red_herring: int = Field(15, ge=0, description="cost of each red herring blamed")
    damage: int = Field(10, ge=0, description="cost of each collateral damage found")
    overtime_per_minute: int = Field(1, ge=0)
    overtime_max: int = Field(10, ge=0)
    dns_tools: list[str] = Field(default_factory=lambda: list(DNS_TOOLS), min_length=1)
    firewall_tools: list[str] = Field(default_factory=lambda: list(FIREWALL_TOOLS),
                                      min_length=1)

    @property
    def max_points(self) -> int:
        return self.diagnosis + self.fix + self.dns_first + self.tools + self.path_nodes
