"""Fabric targets: the hardware model the passes query (never constants inside a pass).

A ``Target`` describes a grid of PCUs and PMUs in a checkerboard joined by switches. Presets are
built from public figures (see ../ARCHITECTURE notes in docs/design.md); a figure that is not
published is our assumption and is marked so below.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.pef import schema


@dataclass(frozen=True)
class Target:
    """A fabric: ``cols x rows`` unit slots, checkerboarded (PCU where x + y is even)."""

    name: str
    cols: int
    rows: int
    pcu_lanes: int
    pcu_stages: int
    pmu_bytes: int
    pmu_banks: int
    clock_ghz: float
    link_capacity: int
    """Streams one switch-to-switch link carries at once."""

    @property
    def num_pcus(self) -> int:
        return (self.cols * self.rows + 1) // 2

    @property
    def num_pmus(self) -> int:
        return self.cols * self.rows // 2

    def is_pcu_slot(self, x: int, y: int) -> bool:
        return (x + y) % 2 == 0

    def to_pef(self) -> schema.Target:
        return schema.Target(
            name=self.name,
            cols=self.cols,
            rows=self.rows,
            pcu_lanes=self.pcu_lanes,
            pcu_stages=self.pcu_stages,
            pmu_bytes=self.pmu_bytes,
            pmu_banks=self.pmu_banks,
            clock_ghz=self.clock_ghz,
            link_capacity=self.link_capacity,
        )


PRESETS: dict[str, Target] = {
    # Plasticine (ISCA 2017): 64 PCU + 64 PMU, 16 lanes x 6 stages, 256 KB PMUs in 16 banks, 1 GHz.
    # link_capacity is our assumption.
    "plasticine": Target("plasticine", 16, 8, 16, 6, 256 * 1024, 16, 1.0, 4),
    # A few units, so that tests exercise capacity limits. All figures are ours.
    "tiny": Target("tiny", 4, 4, 4, 4, 16 * 1024, 4, 1.0, 2),
}


class TargetError(Exception):
    """An unknown target name or a bad target description."""


def get_target(name: str) -> Target:
    """The preset called ``name``."""
    try:
        return PRESETS[name]
    except KeyError:
        raise TargetError(
            f"unknown target '{name}' (choose from {', '.join(sorted(PRESETS))})"
        ) from None
