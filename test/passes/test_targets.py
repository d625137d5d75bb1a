"""Targets: the presets' figures, target files (TOML) checked field by field, and the check that
refuses to run a PEF on a fabric it was not compiled for."""

from __future__ import annotations

from pathlib import Path

import pytest

from compiler.targets import PRESETS, Target, TargetError, get_target, load_target_file
from runtime.pef.schema import Target as PefTarget
from runtime.pef.target_file import (
    TargetFileError,
    TargetMismatchError,
    check_same_target,
    read_target_file,
)

GOOD = """\
name = "half-plasticine"
cols = 8
rows = 8
pcu_lanes = 16
pcu_stages = 6
pmu_bytes = 262144
pmu_banks = 16
clock_ghz = 1
link_capacity = 4
dram_gbps = 25.6
stream_bytes_per_cycle = 64
"""


def target_file(tmp_path: Path, text: str, name: str = "fabric.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_presets_from_the_public_figures() -> None:
    assert set(PRESETS) >= {"plasticine", "sn10", "sn30", "sn40l", "tiny"}
    plasticine = PRESETS["plasticine"]
    assert (plasticine.num_pcus, plasticine.num_pmus) == (64, 64)
    assert plasticine.peak_flops == pytest.approx(12.3e12, rel=0.01)  # FP32, published
    # No bf16 rate published: bf16 at the f32 rate.
    assert plasticine.peak_flops_of("bf16-mixed") == plasticine.peak_flops
    assert plasticine.dram_gbps == 51.2
    # The SambaNova peaks are BF16: two a 32-bit lane, twice our f32 peak.
    for name, units, sram_mb, bf16_tflops in (
        ("sn10", 640, 320, 320),
        ("sn30", 1280, 640, 688),
        ("sn40l", 1040, 520, 638),
    ):
        t = PRESETS[name]
        assert (t.num_pcus, t.num_pmus) == (units, units), name
        assert t.num_pmus * t.pmu_bytes == sram_mb * 2**20, name
        assert 2 * t.peak_flops == pytest.approx(bf16_tflops * 1e12, rel=0.01), name
        assert t.pcu_bf16_lanes == 2 * t.pcu_lanes, name
        for precision in ("bf16-mixed", "bf16"):
            assert t.peak_flops_of(precision) == pytest.approx(bf16_tflops * 1e12, rel=0.01)
        assert t.peak_flops_of("fp32") == t.peak_flops
    assert PRESETS["sn10"].dram_gbps == pytest.approx(6 * 25.6)  # 6 DDR4-3200 channels
    for target in PRESETS.values():  # our assumptions, recorded in the PEF like every figure
        assert target.dram_latency_ns > 0 and target.config_latency_ns > 0, target.name
    tiny = PRESETS["tiny"]
    assert tiny.num_pcus + tiny.num_pmus <= 16


def test_preset_round_trips_through_the_pef() -> None:
    for target in PRESETS.values():
        recorded = target.to_pef()
        assert recorded.dram_gbps == target.dram_gbps > 0
        assert Target.from_pef(recorded).to_pef() == recorded


def test_unknown_preset() -> None:
    with pytest.raises(TargetError, match=r"unknown target 'sn99' \(choose from .*sn10"):
        get_target("sn99")


def test_target_file(tmp_path: Path) -> None:
    path = target_file(tmp_path, GOOD)
    target = get_target(str(path))
    assert target.name == "half-plasticine" and target.num_pcus == 32
    assert target.spec == str(path)  # what the passes are given to find it again
    assert target.peak_flops == pytest.approx(32 * 16 * 6 * 2 * 1e9)
    unnamed = target_file(tmp_path, GOOD.replace('name = "half-plasticine"\n', ""), "mine.toml")
    assert load_target_file(unnamed).name == "mine"
    # The latencies are optional: 0 (not modelled) when absent, else as given.
    assert (target.dram_latency_ns, target.config_latency_ns) == (0.0, 0.0)
    # The bf16 rate too: 0, bf16 at the f32 rate (a file older than the field still loads).
    assert target.pcu_bf16_lanes == 0
    assert target.peak_flops_of("bf16-mixed") == target.peak_flops
    fast = load_target_file(target_file(tmp_path, GOOD + "pcu_bf16_lanes = 32\n", "b.toml"))
    assert fast.peak_flops_of("bf16-mixed") == pytest.approx(2 * target.peak_flops)
    timed = target_file(
        tmp_path, GOOD + "dram_latency_ns = 80\nconfig_latency_ns = 250.5\n", "t.toml"
    )
    assert (load_target_file(timed).dram_latency_ns, load_target_file(timed).config_latency_ns) == (
        80.0,
        250.5,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("pcu_lanes = 16", "pcu_lanes = -4"), r"field 'pcu_lanes' is -4, must be >= 1"),
        (("cols = 8", "cols = 8\nlanes = 16"), r"unknown field 'lanes'"),
        (("pcu_lanes = 16", 'pcu_lanes = "16"'), r"field 'pcu_lanes': expected int, got str"),
        (("pcu_lanes = 16", "pcu_lanes = 16.5"), r"field 'pcu_lanes': expected int, got float"),
        (("link_capacity = 4\n", ""), r"missing field 'link_capacity'"),
        (("dram_gbps = 25.6", "dram_gbps = 0"), r"field 'dram_gbps' is 0.0, must be > 0"),
        (("pcu_stages = 6", "pcu_stages = true"), r"field 'pcu_stages' is a boolean"),
        (("rows = 8", "rows = 8 8"), r"not valid TOML"),
        (
            ("cols = 8", "cols = 8\ndram_latency_ns = -1"),
            r"field 'dram_latency_ns' is -1.0, must be >= 0",
        ),
        (
            ("cols = 8", "cols = 8\nconfig_latency_ns = 1e7"),
            r"field 'config_latency_ns' is 10000000.0, must be <= 1000000.0",
        ),
    ],
)
def test_bad_target_file_names_the_field(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    old, new = change
    assert old in GOOD
    path = target_file(tmp_path, GOOD.replace(old, new))
    with pytest.raises(TargetError, match=rf"^target file {path}: {message}") as info:
        get_target(str(path))
    assert "\n" not in str(info.value)


def test_missing_target_file(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match=r"target file .*nope.toml: cannot read it"):
        get_target(str(tmp_path / "nope.toml"))


def test_a_pef_runs_only_on_its_own_target(tmp_path: Path) -> None:
    recorded: PefTarget = PRESETS["sn10"].to_pef()
    check_same_target(recorded, "sn10", "m.pef")
    with pytest.raises(TargetMismatchError, match=r"m.pef was compiled for target 'sn10', not "):
        check_same_target(recorded, "plasticine", "m.pef")
    path = target_file(tmp_path, GOOD)
    own = read_target_file(path)
    check_same_target(own, str(path), "m.pef")
    other = target_file(tmp_path, GOOD.replace("pcu_lanes = 16", "pcu_lanes = 8"), "o.toml")
    with pytest.raises(TargetMismatchError, match=r"\(pcu_lanes 16 in the PEF, 8 in the file\)"):
        check_same_target(own, str(other), "m.pef")
    with pytest.raises(TargetFileError, match="unknown field"):
        check_same_target(own, str(target_file(tmp_path, "x = 1\n", "x.toml")), "m.pef")
