"""What the performance model says the reference workloads reach on sn10, from the compile report.

The goal was 60% of peak for the matmul and 20% for the MLP's training step; these tests
hold the figures the model reaches and the bounds it proves:

- the 4096^3 f32 matmul is spread by parallelize-units over all 640 PCUs of sn10 (parallel
  [32, 20, 1]: 32 row blocks of 128 rows over the grid's rows, 20 column blocks of 205 columns
  over the PCU slots of a row), its operands and result held whole on chip (128 PMUs each,
  loaded once) and multicast to the copies that share a block. Each copy runs 1.17M vectors at
  its full rate (16 lanes x 6 stages of multiply-adds a cycle); its compulsory off-chip traffic
  (x, w and the result once: 3 x 64 MiB at 118 bytes a cycle) takes 1.70M cycles. But a link
  moves 64 bytes a cycle whatever the streams on it (the cost model's shared links): the link
  from DRAM into row 0 carries both operands' loads (2 x 64 MiB, each into its buffer's first
  PMU) and a multicast of each (x's 28.1 MB, w's 75.0 MB: w's block is re-read for every 6
  rows) and copy 0's result block, 237.4 MB, 3.71M cycles: 30.1% of peak. Spreading the loads
  over the rows and the multicasts over the links is the mapping's work (>= 60% is asked again);
- the 64-128-10 MLP's training step at batch 256 does 10.6 MFLOPs and moves about 0.7 MB
  off-chip (inputs, parameters, activations the backward reads, gradients, optimizer state):
  on sn10 (peak 122,880 FLOPs a cycle, 118 bytes a cycle of DDR4) that traffic alone bounds it
  under 2% of peak. Even a mapping that kept parameters, optimizer state and activations on
  chip across steps must read the batch (256 x 64 f32 inputs and 256 i64 targets, 67.6 kB,
  572 cycles of DDR4) against 86 cycles of work at peak: at most 15.1%, under the 20% hoped for.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from compiler.driver import compile_in_memory
from compiler.report import build_report
from compiler.targets import get_target
from tools.model_file import load_model_file

ROOT = Path(__file__).resolve().parents[2]


def report_for(path: Path, args: dict[str, Any], *, inference: bool, arch: str) -> dict[str, Any]:
    """The compile report of a model file, compiled in this process (no files written)."""
    model_file = load_model_file(str(path))
    ns = argparse.Namespace(seed=0, epoch=0, debug=False, **args)
    torch.manual_seed(0)
    module = model_file.call("model", ns)
    spec = model_file.spec(module, ns, inference=inference)
    target = get_target(arch)
    return build_report(compile_in_memory(spec, inference=inference, target=target), target)


def test_matmul_4096_on_sn10() -> None:
    args = {"batch_size": 4096, "k": 4096, "n": 4096}
    report = report_for(ROOT / "examples/matmul/model.py", args, inference=True, arch="sn10")
    (section,) = report["sections"]
    (unit,) = section["units"]
    assert section["flops"] == 2 * 4096**3
    assert (unit["unroll"], unit["initiation_interval"], unit["bound"]) == (6, 1, "compute")
    assert (unit["parallel"], unit["copies"]) == ([32, 20, 1], 640)
    assert section["pcus"]["used"] == 640  # every PCU of sn10, a copy each
    # The busiest link: DRAM into row 0, both 64 MiB loads, a multicast of x and of w, and copy
    # 0's result block on its way to its PMU (274 vectors of 16 x 6 f32).
    assert section["bound"] == "link"
    busiest = 2 * 64 * 2**20 + 28114944 + 74973184 + 274 * 96 * 4
    assert section["link_cycles"] == -(-busiest // 64)
    assert section["dram_cycles"] < section["link_cycles"]
    assert section["fraction_of_peak"] >= 0.30
    assert section["fraction_of_peak"] <= section["roofline_fraction"]
    assert report["total"]["fraction_of_peak"] == section["fraction_of_peak"]


def test_mlp_training_step_at_batch_256_on_sn10() -> None:
    args = {"batch_size": 256, "hidden": 128, "classes": 10}
    report = report_for(ROOT / "examples/mlp/model.py", args, inference=False, arch="sn10")
    assert [s["name"] for s in report["sections"]] == ["forward", "backward", "optimizer"]
    for section in report["sections"]:
        assert section["fraction_of_peak"] <= section["roofline_fraction"]
    total = report["total"]
    assert total["flops"] > 10e6
    assert total["fraction_of_peak"] >= 0.0015
    # What the step's off-chip traffic allows at most: far below 20% on sn10.
    assert total["roofline_fraction"] < 0.02
    # Whatever the mapping: even if parameters, optimizer state and activations never left the
    # chip, the batch itself (256 x 64 f32 inputs, 256 i64 targets) must come in from DRAM.
    target = get_target("sn10")
    batch_bytes = 256 * 64 * 4 + 256 * 8
    dram_cycles = batch_bytes / (target.dram_gbps / target.clock_ghz)
    compute_cycles = total["flops"] / target.peak_flops_per_cycle
    assert compute_cycles / dram_cycles < 0.16  # < 20%: the MLP's goal cannot be met
