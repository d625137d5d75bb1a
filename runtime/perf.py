"""Performance counters of the emulated fabric, under a simple documented model.

The model (first slice; every figure comes from the PEF's target and unit configs):

- A PCU streams its iteration space through its SIMD lanes, one vector of ``lanes`` elements
  per cycle, after its stage pipeline has filled:
  ``cycles(pcu) = ceil(prod(space) / lanes) + len(stages)``.
  (A reduction costs nothing extra: the combiner is the cross-lane reduction tree and the
  accumulator at the end of the pipeline.)
- The units of a section run concurrently, streaming to each other through PMUs (the fabric is
  spatial and pipelined), so a section takes as long as its slowest unit:
  ``cycles(section) = max(cycles(pcu) for pcu in section)`` (0 for a section without PCUs).
- Off-chip traffic is counted, not timed: ``dram_bytes_in`` is the bytes of every PMU loaded
  from DRAM, ``dram_bytes_out`` the bytes of every section output stored back.
- Time at the target's clock: ``seconds = cycles / (clock_ghz * 1e9)``.

Not modelled yet: switch/stream bandwidth, DRAM bandwidth and latency, bank conflicts, the
cost of a unit whose stages exceed the target's (later issues split such units).

The counters of one run are fixed by the configuration; ``SectionCounters`` also counts the runs
and the host (emulation) time they took.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from runtime.pef.schema import Pcu, Section, Symbol
from runtime.pef.validate import DTYPE_BYTES


@dataclass(frozen=True)
class UnitCounters:
    """One PCU's counters for one run of its section."""

    name: str
    elements: int
    lanes: int
    stages: int
    cycles: int


@dataclass
class SectionCounters:
    """One section's counters: per run (``cycles``, DRAM bytes) and accumulated over runs."""

    section: str
    units: tuple[UnitCounters, ...]
    cycles: int
    dram_bytes_in: int
    dram_bytes_out: int
    clock_ghz: float
    runs: int = 0
    host_seconds: float = field(default=0.0)

    @property
    def seconds(self) -> float:
        """Modelled time of one run at the target's clock."""
        return self.cycles / (self.clock_ghz * 1e9)

    @property
    def total_cycles(self) -> int:
        """Modelled cycles over all runs so far."""
        return self.cycles * self.runs


def pcu_cycles(pcu: Pcu) -> int:
    """``ceil(prod(space) / lanes) + len(stages)``."""
    return -(-math.prod(pcu.space) // max(pcu.lanes, 1)) + len(pcu.stages)


def nbytes(shape: list[int], dtype: str) -> int:
    """Bytes of a tensor of ``shape`` and ``dtype``."""
    return math.prod(shape) * DTYPE_BYTES[dtype]


def section_counters(section: Section, symbols: list[Symbol], clock_ghz: float) -> SectionCounters:
    """The per-run counters of ``section`` under the model above."""
    units = tuple(
        UnitCounters(p.name, math.prod(p.space), p.lanes, len(p.stages), pcu_cycles(p))
        for p in section.pcus
    )
    return SectionCounters(
        section=section.name,
        units=units,
        cycles=max((u.cycles for u in units), default=0),
        dram_bytes_in=sum(nbytes(p.shape, p.dtype) for p in section.pmus if p.source == "dram"),
        dram_bytes_out=sum(
            nbytes(symbols[o.symbol].shape, symbols[o.symbol].dtype) for o in section.outputs
        ),
        clock_ghz=clock_ghz,
    )


def format_report(counters: Mapping[str, SectionCounters]) -> str:
    """A small text table: one line a section, then the total per step (one run of each)."""
    lines = [
        f"{'section':<16}{'units':>7}{'cycles':>14}{'time_us':>12}{'dram_in':>14}"
        f"{'dram_out':>14}{'runs':>8}"
    ]
    for c in counters.values():
        lines.append(
            f"{c.section:<16}{len(c.units):>7}{c.cycles:>14}{c.seconds * 1e6:>12.3f}"
            f"{c.dram_bytes_in:>14}{c.dram_bytes_out:>14}{c.runs:>8}"
        )
    total = sum(c.cycles for c in counters.values())
    seconds = sum(c.seconds for c in counters.values())
    lines.append(f"{'total':<16}{'':>7}{total:>14}{seconds * 1e6:>12.3f}")
    return "\n".join(lines)
