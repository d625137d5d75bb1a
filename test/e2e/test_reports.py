"""rdu-compile's report (report.json, the summary, report.html and trace.json beside them),
rdu-run's profile, and targets end to end: a target file, and a PEF refused on a fabric it was
not compiled for."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from e2e_helpers import MLP, tool

from runtime.machine.perf import program_models
from runtime.pef import read_pef

SMALL = """\
name = "small"
cols = 8
rows = 8
pcu_lanes = 8
pcu_stages = 4
pmu_bytes = 65536
pmu_banks = 8
clock_ghz = 0.5
link_capacity = 4
dram_gbps = 10
stream_bytes_per_cycle = 32
"""


def test_compile_writes_the_report(mlp_pef: Path) -> None:
    out = mlp_pef.parent
    report = json.loads((out / "report.json").read_text())
    program = read_pef(mlp_pef)
    assert report["target"]["name"] == "plasticine"
    assert report["target"]["peak_flops"] == 64 * 16 * 6 * 2 * 1e9
    assert [s["name"] for s in report["sections"]] == ["forward", "backward", "optimizer"]
    models = program_models(program)  # the report is the model of the PEF (co-resident here)
    assert program.resident is not None and report["resident"]["sections"] == [
        "forward",
        "backward",
        "optimizer",
    ]
    for entry, section, model in zip(report["sections"], program.sections, models, strict=True):
        assert entry["cycles"] == model.cycles > 0
        assert entry["flops"] == model.flops > 0
        assert entry["offchip_bytes"]["total"] == model.dram_bytes > 0
        copies = sum(math.prod(p.parallel) if p.parallel else 1 for p in section.pcus)
        assert (
            entry["pcus"]
            == {"used": copies, "available": 64}
            == {
                "used": model.pcus_used,
                "available": 64,
            }
        )
        assert entry["pmus"]["available"] == 64 and entry["links"]["used"] > 0
        assert 0 < entry["fraction_of_peak"] <= entry["roofline_fraction"] <= 1
        assert [u["name"] for u in entry["units"]] == [p.name for p in section.pcus]
    page = (out / "report.html").read_text()
    assert page.count('<svg class="grid"') == len(program.sections)
    assert (out / "trace.json").exists() and not list(out.glob("*.png"))
    total = report["total"]
    assert total["cycles"] == sum(s["cycles"] for s in report["sections"])
    log = (out / "mlp.log").read_text()
    assert "target plasticine: 64 PCUs, 64 PMUs" in log
    assert any(line.startswith("backward") and "%" in line for line in log.splitlines())


def test_run_profile_and_arch(mlp_pef: Path) -> None:
    result = tool("rdu-run", str(MLP), "--pef", str(mlp_pef), "--test", "--profile",
                  "--arch", "plasticine")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    profile = lines[next(i for i, x in enumerate(lines) if x.startswith("profile")) :]
    assert profile[1].split()[-1] == "runs"
    for name in ("forward", "backward", "optimizer"):
        row = next(x for x in profile if x.startswith(name))
        assert row.split()[-1] == "1"  # one run of each
    assert any(x.startswith("host (emulation) time") for x in profile)
    trace = mlp_pef.parent / "results" / "trace.json"  # --test: in the results folder
    assert profile[-1].startswith(f"wrote {trace} ") and trace.stat().st_size > 0

    refused = tool("rdu-run", str(MLP), "--pef", str(mlp_pef), "--test", "--arch", "sn10")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert "was compiled for target 'plasticine', not 'sn10'" in refused.stderr


def test_target_file_end_to_end(tmp_path: Path) -> None:
    small = tmp_path / "small.toml"
    small.write_text(SMALL)
    result = tool("rdu-compile", str(MLP), "--inference", "--arch", str(small),
                  "--output-folder", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "target small: 32 PCUs, 32 PMUs" in result.stdout
    pef = tmp_path / "mlp" / "mlp.pef"
    recorded = read_pef(pef).meta.target
    assert (recorded.name, recorded.cols, recorded.pcu_lanes) == ("small", 8, 8)
    assert (recorded.dram_gbps, recorded.stream_bytes_per_cycle) == (10.0, 32)

    other = tmp_path / "other.toml"
    other.write_text(SMALL.replace("clock_ghz = 0.5", "clock_ghz = 1.0"))
    refused = tool("rdu-run", str(MLP), "--pef", str(pef), "--test", "--arch", str(other))
    assert refused.returncode == 1
    assert "(clock_ghz 0.5 in the PEF, 1.0 in the file)" in refused.stderr

    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL.replace("pcu_lanes = 8", "pcu_lanes = -8"))
    failed = tool("rdu-compile", str(MLP), "--arch", str(bad), "--output-folder", str(tmp_path))
    assert failed.returncode == 1
    assert failed.stderr.strip() == (
        f"rdu-compile: error: target file {bad}: field 'pcu_lanes' is -8, must be >= 1"
    )


def test_report_ideal_is_worked_out_without_the_cost_model(mlp_pef: Path) -> None:
    # The MLP 64-128-10 at rdu-compile's batch 16 on plasticine (12.288 TFLOP/s, 51.2 GB/s,
    # 64 PMUs of 256 KiB). FlopCounterMode counts the matmuls: forward 2 x 16 x (64 x 128 +
    # 128 x 10), backward both weight gradients and the second layer's input gradient (the
    # input needs none): 2 x 16 x (2 x 64 x 128 + 3 x 128 x 10) = 647,168. SGD with momentum
    # and weight decay: 7 FLOPs for each of the 9,610 parameters' elements.
    report = json.loads((mlp_pef.parent / "report.json").read_text())
    ideal = report["ideal"]
    assert ideal["flop_counter_flops"] == 2 * 16 * (2 * 64 * 128 + 3 * 128 * 10) == 647168
    assert ideal["flops"] == 647168 + 7 * 9610
    # The batch: 16 x 64 f32 inputs and 16 i64 labels; the state: parameters and momentum
    # buffers, 2 x 9,610 f32, read once and written once.
    assert ideal["batch_bytes"] == 16 * 64 * 4 + 16 * 8 == 4224
    assert ideal["state_bytes"] == ideal["updated_bytes"] == 2 * 9610 * 4
    assert ideal["resident"]  # 77 kB of state in 16 MiB of PMUs
    dram = (4224 + 2 * 2 * 9610 * 4) / 51.2e9  # 3.09 us, above the compute's 58 ns
    assert ideal["seconds"] == float(f"{dram:.6g}")
    assert ideal["resident_seconds"] == float(f"{4224 / 51.2e9:.6g}")  # the batch alone
    modelled = report["total"]["seconds"]
    assert ideal["of_ideal"] == pytest.approx(modelled / dram, rel=1e-5)
    log = (mlp_pef.parent / "mlp.log").read_text()
    assert any(line.startswith("ideal") and "of ideal" in line for line in log.splitlines())
    assert any(line.startswith("resident") and "of ideal" in line for line in log.splitlines())


def test_report_ideal_of_inference_is_the_forward(mlp_inference_pef: Path) -> None:
    report = json.loads((mlp_inference_pef.parent / "report.json").read_text())
    assert report["ideal"]["flops"] == 2 * 16 * (64 * 128 + 128 * 10)  # no backward, no step
    assert report["ideal"]["updated_bytes"] == 0
