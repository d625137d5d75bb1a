"""Fabric targets: the hardware model the passes query (never constants inside a pass).

A ``Target`` describes a grid of PCUs and PMUs in a checkerboard joined by switches, with the
figures the performance model (``runtime/perf.py``) needs: clock, off-chip (DRAM) bandwidth and
the bandwidth of one stream over a link. ``get_target(arch)`` gives a preset by name or reads a
target file (TOML, see ``runtime/pef/target_file.py``, validated field by field on load).

The presets come from the public figures (Prabhakar et al., "Plasticine: A Reconfigurable
Architecture for Parallel Patterns", ISCA 2017; SambaNova's published SN10, SN30 and SN40L
figures); every figure that is not published is our assumption and says so below.
Peak throughput is derived, never stored: every stage of every lane of every PCU does one f32
fused multiply-add (2 FLOPs) a cycle, ``peak_flops = num_pcus * pcu_lanes * pcu_stages * 2 *
clock``. For Plasticine this gives the published 12.3 FP32 TFLOPS. The SambaNova figures are
BF16: we assume 32-bit lanes that do two BF16 or one f32 multiply-add a cycle, so our (f32)
peak is half the published BF16 one, and choose the clock that gives it.

    target  units (PCU+PMU)   lanes x stages  clock    f32 peak      BF16 (published)
    sn10    640 + 640         16 x 6          1.3 GHz  159.7 TFLOPS  320
    sn30    1280 + 1280       16 x 6          1.4 GHz  344.1 TFLOPS  688
    sn40l   1040 + 1040       16 x 6          1.6 GHz  319.5 TFLOPS  638
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from runtime.pef import schema
from runtime.pef.target_file import TargetFileError, looks_like_target_file, read_target_file

FLOPS_PER_FMA = 2
"""A fused multiply-add counts as two floating-point operations."""


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
    dram_gbps: float = 0.0
    """Off-chip (DRAM) bandwidth, GB/s (0: not modelled)."""
    stream_bytes_per_cycle: int = 0
    """Bytes one stream moves over a link in a cycle (0: one vector of ``pcu_lanes`` words)."""
    source: str = ""
    """The target file this target was read from ("" for a preset); what the passes are given
    as their ``target`` option so that they find the same target again."""
    pcu_ports: int = 6
    """Input streams (ports) one PCU reads at once; split-units splits a unit that needs more.
    Our assumption for every preset (vector and scalar inputs alike); not in the PEF or target
    files yet, so a target file gets this default."""
    dram_bytes: int = 0
    """Off-chip (DRAM) capacity in bytes: a single tensor larger than this cannot run, and
    rdu-compile refuses it (0: not modelled). Not in the PEF or target files yet."""

    @property
    def num_pcus(self) -> int:
        return (self.cols * self.rows + 1) // 2

    @property
    def num_pmus(self) -> int:
        return self.cols * self.rows // 2

    @property
    def num_links(self) -> int:
        """Directed links between adjacent switches of the ``(cols+1) x (rows+1)`` switch grid."""
        return 2 * (self.cols * (self.rows + 1) + self.rows * (self.cols + 1))

    @property
    def peak_flops_per_cycle(self) -> int:
        """Every stage of every lane of every PCU doing a fused multiply-add."""
        return self.num_pcus * self.pcu_lanes * self.pcu_stages * FLOPS_PER_FMA

    @property
    def peak_flops(self) -> float:
        """Peak f32 FLOPs a second."""
        return self.peak_flops_per_cycle * self.clock_ghz * 1e9

    @property
    def spec(self) -> str:
        """What ``get_target`` takes to give this target back: the file or the preset name."""
        return self.source or self.name

    def is_pcu_slot(self, x: int, y: int) -> bool:
        return (x + y) % 2 == 0

    def to_pef(self) -> schema.Target:
        return schema.Target(**{f: getattr(self, f) for f in schema.Target.__struct_fields__})

    @staticmethod
    def from_pef(target: schema.Target, source: str = "") -> Target:
        known = {f.name for f in fields(Target)}
        values = {f: getattr(target, f) for f in target.__struct_fields__ if f in known}
        return Target(**values, source=source)


PRESETS: dict[str, Target] = {
    # Plasticine (ISCA 2017): 64 PCU + 64 PMU, 16 lanes x 6 stages, 256 KB PMUs in 16 banks,
    # 1 GHz, 51.2 GB/s DRAM. Ours: link_capacity; a stream moves one 16-lane vector a cycle.
    "plasticine": Target(
        "plasticine", cols=16, rows=8, pcu_lanes=16, pcu_stages=6, pmu_bytes=256 * 1024,
        pmu_banks=16, clock_ghz=1.0, link_capacity=4, dram_gbps=51.2,
        stream_bytes_per_cycle=64,
        dram_bytes=16 * 2**30,  # ours: the paper gives no DRAM capacity
    ),
    # SN10: 640 PCUs + 640 PMUs, 320 MB SRAM (512 KB a PMU), 1.5 TB DDR4 on 6 channels, about
    # 320 BF16 TFLOPS. Ours: 16 lanes x 6 stages, 16 banks, 1.3 GHz (see the module docstring),
    # link_capacity, 64 bytes a stream a cycle, DDR4-3200 on the 6 channels = 153.6 GB/s.
    "sn10": Target(
        "sn10", cols=40, rows=32, pcu_lanes=16, pcu_stages=6, pmu_bytes=512 * 1024,
        pmu_banks=16, clock_ghz=1.3, link_capacity=8, dram_gbps=153.6,
        stream_bytes_per_cycle=64,
        dram_bytes=1536 * 2**30,  # the published 1.5 TB of DDR4
    ),
    # SN30: 8 tiles (two SN10s), 688 BF16 TFLOPS. Ours: 1280 PCUs + 1280 PMUs of 512 KB (twice
    # SN10), 16 lanes x 6 stages, 16 banks, 1.4 GHz, link_capacity, 64 bytes a stream a cycle,
    # 12 DDR4-3200 channels (twice SN10's) = 307.2 GB/s.
    "sn30": Target(
        "sn30", cols=64, rows=40, pcu_lanes=16, pcu_stages=6, pmu_bytes=512 * 1024,
        pmu_banks=16, clock_ghz=1.4, link_capacity=8, dram_gbps=307.2,
        stream_bytes_per_cycle=64,
        dram_bytes=3072 * 2**30,  # ours: twice SN10's, like the channels
    ),
    # SN40L: 1,040 PCUs + 1,040 PMUs, 520 MB SRAM (512 KB a PMU), 64 GB HBM + up to 1.5 TB
    # DDR5, 638 BF16 TFLOPS. Ours: 16 lanes x 6 stages, 16 banks, 1.6 GHz, link_capacity,
    # 64 bytes a stream a cycle; off-chip traffic goes to the HBM, at 1.6 TB/s.
    "sn40l": Target(
        "sn40l", cols=52, rows=40, pcu_lanes=16, pcu_stages=6, pmu_bytes=512 * 1024,
        pmu_banks=16, clock_ghz=1.6, link_capacity=8, dram_gbps=1600.0,
        stream_bytes_per_cycle=64,
        dram_bytes=(64 + 1536) * 2**30,  # the published 64 GB HBM + 1.5 TB DDR5
    ),
    # A few units, so that tests exercise capacity limits. All figures are ours.
    "tiny": Target(
        "tiny", cols=4, rows=4, pcu_lanes=4, pcu_stages=4, pmu_bytes=16 * 1024, pmu_banks=4,
        clock_ghz=1.0, link_capacity=2, dram_gbps=4.0, stream_bytes_per_cycle=16,
        pcu_ports=3, dram_bytes=64 * 2**20,
    ),
}  # fmt: skip


class TargetError(Exception):
    """An unknown target name or a bad target description."""


def get_target(arch: str) -> Target:
    """The preset called ``arch``, or the target described by the file ``arch`` (TOML)."""
    if arch in PRESETS:
        return PRESETS[arch]
    if looks_like_target_file(arch):
        return load_target_file(arch)
    raise TargetError(
        f"unknown target '{arch}' (choose from {', '.join(sorted(PRESETS))}, or give a "
        "target file NAME.toml)"
    )


def load_target_file(path: str | Path) -> Target:
    """The target a TOML file describes (see ``runtime/pef/target_file.py``)."""
    try:
        return Target.from_pef(read_target_file(path), source=str(path))
    except TargetFileError as err:
        raise TargetError(str(err)) from None
