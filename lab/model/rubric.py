"""The rubric: how many points each part of an attempt is worth (docs/scoring.md).

The defaults add up to 100 for a perfect attempt: 50 for the diagnoses (split over the
faults), 20 for repairs (each fault's share when its own check says repaired and mail
flows end to end), 20 for the method (8 when the first diagnostic command is a DNS
query, 4 for at least ``min_tools`` distinct tools, 8 for examining the nodes on the
faults' paths) and 10 for a right diagnosis in good time. Penalties are subtracted; a
scenario file overrides any weight under its ``rubric:`` key.

Two properties hold for every rubric (checked when it is built):

- a change that damages the lab costs more than a change can earn (the repair points
  plus the method points a command can add), so "opening everything" never beats a
  right diagnosis without a repair;
- a wrong submission costs enough that guessing does not pay: submitting every cause of
  the menu earns at most 1/N of the diagnosis points (tests/test_scoring.py checks it
  against the real menu).

Time over the limit costs ``overtime_per_minute`` per started minute, at most
``overtime_max``: linear so that a minute late is not punished like an hour late, capped
so that a slow but correct attempt still passes.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

DNS_TOOLS = ["dig", "nslookup", "host", "drill", "delv", "kdig"]
DAMAGE_MARGIN = 5  # by default a damaging change costs this much more than it can earn
EARNABLE = ("fix", "tools", "path_nodes")  # what one change can earn at most


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    diagnosis: int = Field(50, ge=0, description="points for all faults diagnosed right")
    partial_fraction: float = Field(0.5, ge=0, le=1,
                                    description="share of a fault's points for the right "
                                    "cause on a wrong node (or a cause the scenario "
                                    "accepts as partly right)")
    fix: int = Field(20, ge=0, description="points for repairs: a fault's share when its "
                     "own check says repaired and every end-to-end probe passes")
    dns_first: int = Field(8, ge=0, description="the first diagnostic command is a DNS query")
    tools: int = Field(4, ge=0, description="at least min_tools distinct tools used")
    min_tools: int = Field(3, ge=1)
    path_nodes: int = Field(8, ge=0, description="nodes on the faults' paths examined (a "
                            "command ran on them or addressed them)")
    time: int = Field(10, ge=0, description="a right diagnosis before the time limit")
    time_full: float = Field(0.5, gt=0, le=1, description="share of the limit within which "
                             "the time points are full; they fall to 0 at the limit")
    wrong_submission: int = Field(5, ge=0, description="cost of each wrong submission")
    red_herring: int = Field(15, ge=0, description="cost of each red herring blamed")
    damage: int = Field(37, ge=0, description="cost of each change that damages the lab "
                        "(default: fix + tools + path_nodes + 5)")
    overtime_per_minute: int = Field(1, ge=0)
    overtime_max: int = Field(10, ge=0)
    dns_tools: list[str] = Field(default_factory=lambda: list(DNS_TOOLS), min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _default_damage(cls, data: Any) -> Any:
        """Unless set, damage follows the weights it must outweigh."""
        if isinstance(data, dict) and "damage" not in data:
            weights = [data.get(k, cls.model_fields[k].default) for k in EARNABLE]
            if all(isinstance(w, int) for w in weights):  # else the fields' errors tell
                data = {**data, "damage": sum(weights) + DAMAGE_MARGIN}
        return data

    @model_validator(mode="after")
    def _damage_never_pays(self) -> Rubric:
        earnable = sum(getattr(self, k) for k in EARNABLE)
        if self.damage <= earnable:
            raise ValueError(f"damage ({self.damage}) must cost more than a change can earn "
                             f"(fix + tools + path_nodes = {earnable}), or opening the "
                             "firewall would pay")
        return self

    @property
    def method_points(self) -> int:
        return self.dns_first + self.tools + self.path_nodes

    @property
    def max_points(self) -> int:
        return self.diagnosis + self.fix + self.method_points + self.time
