"""The fabric targets: the ``Target`` description, the presets and the figures derived from a
target, for the compiler (``compiler.targets.get_target``), the performance model and the
runtime (``rdu-run --arch NAME`` compares a PEF's target with a preset's figures).

A ``Target`` describes a grid of PCUs and PMUs in a checkerboard joined by switches, with the
figures the performance model (``runtime/machine/perf.py``) needs: clock, off-chip (DRAM)
bandwidth and the bandwidth of one stream over a link. A PEF records the figures of
``runtime.pef.schema.Target`` (``Target.to_pef``); the figure functions (``num_pcus``,
``peak_flops_per_cycle``, ...) take either.

The scalar network (``scalar_link_capacity``) is our assumption for every preset: Plasticine
has a word-level scalar network beside the vector one, through the same switches, but neither
paper gives its width, so each preset's scalar links carry as many PMUs' values as its vector
links carry streams (``link_capacity``). Register ports (a learning rate read by every unit of
an optimizer) travel it (``runtime.machine.rules.on_scalar_network``).

The latencies (``dram_latency_ns``, ``config_latency_ns``) are our assumptions for every preset
(none is published): 100 ns from a DRAM request to its first bytes (a DDR4 or HBM row miss and
the memory controller, the usual order of magnitude), and 500 ns to load a section beyond reading
its configuration from DRAM (sending it through the fabric's configuration network and starting
the units; ``tiny``: 20 ns and 50 ns).

The presets come from the public figures (the papers: Plasticine, ISCA 2017; SambaNova
SN10, SN30, SN40L); every figure that is not published is our assumption and says so below.
Peak throughput is derived, never stored: every stage of every lane of every PCU does one
fused multiply-add (2 FLOPs) a cycle, ``peak_flops = num_pcus * lanes * pcu_stages * 2 *
clock``, ``lanes`` being ``pcu_lanes`` for f32 and ``pcu_bf16_lanes`` for bf16 (``bf16_lanes``:
``pcu_lanes`` when the target gives none). For Plasticine the f32 peak is the published 12.3
FP32 TFLOPS; the paper gives no bf16 rate, so bf16 runs at the f32 one. The SambaNova figures
are BF16: we assume 32-bit lanes that do two BF16 or one f32 multiply-add a cycle
(``pcu_bf16_lanes = 2 * pcu_lanes``, our assumption: SambaNova publishes no f32 figure), and
choose the clock that gives the published BF16 peak; the f32 peak is then half of it.

    target  units (PCU+PMU)   lanes (f32/bf16) x stages  clock    f32 peak  bf16 peak (published)
    sn10    640 + 640         16/32 x 6                  1.3 GHz  159.7     319.5 TFLOPS (320)
    sn30    1280 + 1280       16/32 x 6                  1.4 GHz  344.1     688.1 TFLOPS (688)
    sn40l   1040 + 1040       16/32 x 6                  1.6 GHz  319.5     638.9 TFLOPS (638)
"""

from __future__ import annotations

import math
from typing import Protocol

from runtime.pef import schema

FLOPS_PER_FMA = 2
"""A fused multiply-add counts as two floating-point operations."""


class Figures(Protocol):
    """What the figure functions read of a target (a ``Target`` or a PEF's)."""

    @property
    def cols(self) -> int: ...
    @property
    def rows(self) -> int: ...
    @property
    def pcu_lanes(self) -> int: ...
    @property
    def pcu_stages(self) -> int: ...
    @property
    def clock_ghz(self) -> float: ...
    @property
    def dram_gbps(self) -> float: ...
    @property
    def stream_bytes_per_cycle(self) -> int: ...
    @property
    def pcu_bf16_lanes(self) -> int: ...


def num_pcus(target: Figures) -> int:
    """PCU slots of the checkerboard (``x + y`` even)."""
    return (target.cols * target.rows + 1) // 2


def num_pmus(target: Figures) -> int:
    """PMU slots of the checkerboard (``x + y`` odd)."""
    return target.cols * target.rows // 2


def num_links(target: Figures) -> int:
    """Directed links between adjacent switches of the ``(cols+1) x (rows+1)`` switch grid."""
    return 2 * (target.cols * (target.rows + 1) + target.rows * (target.cols + 1))


def bf16_lanes(target: Figures) -> int:
    """bf16 multiply-adds a PCU stage does a cycle: ``pcu_bf16_lanes``, or ``pcu_lanes`` (the
    f32 rate) when the target gives none."""
    return target.pcu_bf16_lanes or target.pcu_lanes


def peak_dtype(precision: str) -> str:
    """The element type whose peak a PEF of ``precision`` (``rdu-compile --precision``) is
    judged against: ``bf16`` for ``bf16-mixed`` and ``bf16``, else ``f32``."""
    return "bf16" if precision.startswith("bf16") else "f32"


def peak_flops_per_cycle(target: Figures, dtype: str = "f32") -> int:
    """Every stage of every lane of every PCU doing a fused multiply-add of ``dtype``
    (``f32``: ``pcu_lanes``; ``bf16``: ``bf16_lanes``)."""
    lanes = bf16_lanes(target) if dtype == "bf16" else target.pcu_lanes
    return num_pcus(target) * lanes * target.pcu_stages * FLOPS_PER_FMA


def stream_bytes(target: Figures) -> int:
    """Bytes one stream moves over a link in a cycle (default: a vector of 32-bit words)."""
    return target.stream_bytes_per_cycle or 4 * target.pcu_lanes


def dram_bytes_per_cycle(target: Figures) -> float:
    """Off-chip bytes a cycle (``inf`` when the target gives no DRAM bandwidth)."""
    if target.dram_gbps <= 0:
        return math.inf
    return target.dram_gbps / target.clock_ghz


class Target(schema.Target, frozen=True, kw_only=True):
    """A fabric: ``cols x rows`` unit slots, checkerboarded (PCU where x + y is even).

    The figures a PEF records are ``schema.Target``'s fields, written once there; a ``Target``
    adds what only the compiler reads (below), and ``to_pef`` drops it again."""

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
        return num_pcus(self)

    @property
    def num_pmus(self) -> int:
        return num_pmus(self)

    @property
    def num_links(self) -> int:
        """Directed links between adjacent switches of the ``(cols+1) x (rows+1)`` switch grid."""
        return num_links(self)

    @property
    def peak_flops_per_cycle(self) -> int:
        """Every stage of every lane of every PCU doing a fused multiply-add."""
        return peak_flops_per_cycle(self)

    @property
    def peak_flops(self) -> float:
        """Peak f32 FLOPs a second."""
        return self.peak_flops_per_cycle * self.clock_ghz * 1e9

    def peak_flops_of(self, precision: str) -> float:
        """Peak FLOPs a second of a PEF compiled at ``precision`` (``peak_dtype``)."""
        return peak_flops_per_cycle(self, peak_dtype(precision)) * self.clock_ghz * 1e9

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
        values = {f: getattr(target, f) for f in schema.Target.__struct_fields__}
        return Target(**values, source=source)


PRESETS: dict[str, Target] = {
    # Plasticine (ISCA 2017): 64 PCU + 64 PMU, 16 lanes x 6 stages, 256 KB PMUs in 16 banks,
    # 1 GHz, 51.2 GB/s DRAM. Ours: link_capacity, the latencies; a stream moves one 16-lane
    # vector a cycle. No bf16 rate (the paper is f32): bf16 at the f32 rate.
    "plasticine": Target(
        "plasticine", cols=16, rows=8, pcu_lanes=16, pcu_stages=6, pmu_bytes=256 * 1024,
        pmu_banks=16, clock_ghz=1.0, link_capacity=4, scalar_link_capacity=4, dram_gbps=51.2,
        stream_bytes_per_cycle=64, dram_latency_ns=100.0, config_latency_ns=500.0,
        dram_bytes=16 * 2**30,  # ours: the paper gives no DRAM capacity
    ),
    # SN10: 640 PCUs + 640 PMUs, 320 MB SRAM (512 KB a PMU), 1.5 TB DDR4 on 6 channels, about
    # 320 BF16 TFLOPS. Ours: 16 lanes x 6 stages, 16 banks, 1.3 GHz (see the module docstring),
    # link_capacity, the latencies, 64 bytes a stream a cycle, DDR4-3200 on the 6 channels =
    # 153.6 GB/s.
    "sn10": Target(
        "sn10", cols=40, rows=32, pcu_lanes=16, pcu_stages=6, pmu_bytes=512 * 1024,
        pmu_banks=16, clock_ghz=1.3, link_capacity=8, scalar_link_capacity=8,
        dram_gbps=153.6, stream_bytes_per_cycle=64, dram_latency_ns=100.0, config_latency_ns=500.0,
        pcu_bf16_lanes=32,  # ours: two bf16 a 32-bit lane, the published bf16 peak
        dram_bytes=1536 * 2**30,  # the published 1.5 TB of DDR4
    ),
    # SN30: 8 tiles (two SN10s), 688 BF16 TFLOPS. Ours: 1280 PCUs + 1280 PMUs of 512 KB (twice
    # SN10), 16 lanes x 6 stages, 16 banks, 1.4 GHz, link_capacity, the latencies, 64 bytes a
    # stream a cycle, 12 DDR4-3200 channels (twice SN10's) = 307.2 GB/s.
    "sn30": Target(
        "sn30", cols=64, rows=40, pcu_lanes=16, pcu_stages=6, pmu_bytes=512 * 1024,
        pmu_banks=16, clock_ghz=1.4, link_capacity=8, scalar_link_capacity=8,
        dram_gbps=307.2, stream_bytes_per_cycle=64, dram_latency_ns=100.0, config_latency_ns=500.0,
        pcu_bf16_lanes=32,  # ours: two bf16 a 32-bit lane, the published bf16 peak
        dram_bytes=3072 * 2**30,  # ours: twice SN10's, like the channels
    ),
    # SN40L: 1,040 PCUs + 1,040 PMUs, 520 MB SRAM (512 KB a PMU), 64 GB HBM + up to 1.5 TB
    # DDR5, 638 BF16 TFLOPS. Ours: 16 lanes x 6 stages, 16 banks, 1.6 GHz, link_capacity, the
    # latencies,
    # 64 bytes a stream a cycle; off-chip traffic goes to the HBM, at 1.6 TB/s.
    "sn40l": Target(
        "sn40l", cols=52, rows=40, pcu_lanes=16, pcu_stages=6, pmu_bytes=512 * 1024,
        pmu_banks=16, clock_ghz=1.6, link_capacity=8, scalar_link_capacity=8,
        dram_gbps=1600.0, stream_bytes_per_cycle=64, dram_latency_ns=100.0, config_latency_ns=500.0,
        pcu_bf16_lanes=32,  # ours: two bf16 a 32-bit lane, the published bf16 peak
        dram_bytes=(64 + 1536) * 2**30,  # the published 64 GB HBM + 1.5 TB DDR5
    ),
    # A few units, so that tests exercise capacity limits. All figures are ours.
    "tiny": Target(
        "tiny", cols=4, rows=4, pcu_lanes=4, pcu_stages=4, pmu_bytes=16 * 1024, pmu_banks=4,
        clock_ghz=1.0, link_capacity=2, scalar_link_capacity=2, dram_gbps=4.0,
        stream_bytes_per_cycle=16,
        dram_latency_ns=20.0, config_latency_ns=50.0, pcu_ports=3, dram_bytes=64 * 2**20,
        pcu_bf16_lanes=8,
    ),
}  # fmt: skip
