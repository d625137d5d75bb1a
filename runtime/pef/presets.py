"""The figures the runtime knows the preset targets by (``rdu-run --arch sn10``): a PEF is run
on a preset only if it records exactly these, not merely its name (a target file may be called
``sn10.toml``). The compiler's presets (``compiler/targets``) hold the same figures and more
(``test/runtime/test_presets.py`` checks that they agree); the runtime never imports the
compiler, so they are here too."""

from __future__ import annotations

from runtime.pef.schema import Target

PRESETS: dict[str, Target] = {
    "plasticine": Target(
        "plasticine", cols=16, rows=8, pcu_lanes=16, pcu_stages=6, pmu_bytes=262144,
        pmu_banks=16, clock_ghz=1.0, link_capacity=4, dram_gbps=51.2, stream_bytes_per_cycle=64,
    ),
    "sn10": Target(
        "sn10", cols=40, rows=32, pcu_lanes=16, pcu_stages=6, pmu_bytes=524288, pmu_banks=16,
        clock_ghz=1.3, link_capacity=8, dram_gbps=153.6, stream_bytes_per_cycle=64,
    ),
    "sn30": Target(
        "sn30", cols=64, rows=40, pcu_lanes=16, pcu_stages=6, pmu_bytes=524288, pmu_banks=16,
        clock_ghz=1.4, link_capacity=8, dram_gbps=307.2, stream_bytes_per_cycle=64,
    ),
    "sn40l": Target(
        "sn40l", cols=52, rows=40, pcu_lanes=16, pcu_stages=6, pmu_bytes=524288, pmu_banks=16,
        clock_ghz=1.6, link_capacity=8, dram_gbps=1600.0, stream_bytes_per_cycle=64,
    ),
    "tiny": Target(
        "tiny", cols=4, rows=4, pcu_lanes=4, pcu_stages=4, pmu_bytes=16384, pmu_banks=4,
        clock_ghz=1.0, link_capacity=2, dram_gbps=4.0, stream_bytes_per_cycle=16,
    ),
}  # fmt: skip
