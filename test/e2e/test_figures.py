"""What the performance model says the reference workloads reach on sn10, from the compile report.

The goal was 60% of peak for the matmul and 20% for the MLP's training step; these tests
hold the figures the model reaches and the bounds it proves:

- the 4096^3 f32 matmul is spread by parallelize-units over all 640 PCUs of sn10 (parallel
  [32, 20, 1]: 32 row blocks of 128 rows over the grid's rows, 20 column blocks of 205 columns
  over the PCU slots of a row), its operands and result held whole on chip (128 PMUs each,
  loaded once) and multicast to the copies that share a block. Each copy runs 1.17M vectors at
  its full rate (16 lanes x 6 stages of multiply-adds a cycle); its compulsory off-chip traffic
  (x, w and the result once: 3 x 64 MiB at 118 bytes a cycle) takes 1.70M cycles, at most
  65.6% of peak. A link moves 64 bytes a cycle whatever the streams on it (the cost model's
  shared links). The layout (``compiler/passes/parallel_layout.py``) puts the first PMU of x,
  w and the result at the DRAM edge (column 0: the loads and the store take no link), sends
  x's row blocks along the rows (28.1 MB a row) and w's column blocks down the columns (75.0
  MB a column: w's block is re-read for every 6 rows), one stream a line, so no link carries
  two operand streams: the busiest carries one of w's and a few copies' result blocks, 1.18M
  cycles. The section is bound by its copies, which start once both loads are in (0.57M
  cycles) and run 1.17M: 64.3% of peak (30.1% before, when both loads and a multicast of
  each went through the one link from DRAM into row 0: 237 MB, 3.71M cycles);
- the same matmul in bf16 (``--precision bf16``: bf16 x and w, a bf16 result as torch's):
  its compulsory traffic is 3 x 32 MiB, against the bf16 peak (twice the f32 one): at most
  65.6% of the bf16 peak, from the target's published figures alone, so 60% is not ruled out.
  Our compile reaches 17.6%, for two reasons in the lowering, not in the layout: the matmul's
  body widens both bf16 operands with a ``cast`` stage each before its ``mul`` (3 stages: 2
  copies of the body down the 6-stage pipeline instead of 6), and its f32 accumulator is
  written out (spilled, 64 MiB out and back) and cast to bf16 by a section of its own;
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
from e2e_helpers import judged, rdu_test

from compiler.driver import compile_in_memory
from compiler.report import build_report
from compiler.targets import get_target
from runtime.machine import perf
from runtime.pef import encode_pef
from runtime.pef.schema import Program
from tools.model_file import load_model_file
from tools.rdu_compile import compile_flags, model_spec

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


def _link_loads(program: Program) -> dict[tuple[tuple[int, int], tuple[int, int]], list[int]]:
    """The bytes of each route over each link of the program's one section (``perf``'s rule)."""
    (section,) = program.sections
    units = perf.model_section(section, program.meta).units
    loads = perf.pmu_loads(section, program.meta.target)
    carried = perf.route_bytes(section, units, program.meta.symbols, loads)
    links: dict[tuple[tuple[int, int], tuple[int, int]], list[int]] = {}
    for route, moved in zip(section.routes, carried, strict=True):
        for a, b in zip(route.hops, route.hops[1:], strict=False):
            links.setdefault(((a[0], a[1]), (b[0], b[1])), []).append(moved)
    return links


def _matmul(m: int, k: int, n: int, precision: str = "fp32", **compile_args: Any) -> Program:
    """The matmul example's inference PEF on sn10, compiled as rdu-compile would."""
    path = str(ROOT / "examples/matmul/model.py")
    target = get_target("sn10")
    extra = [f"--k={k}", f"--n={n}"]
    model_file, spec = model_spec(path, extra, True, m, 0, False, target, precision)
    return compile_in_memory(
        spec,
        inference=True,
        target=target,
        flags=compile_flags("sn10", m, True, False, 1, extra, precision),
        source_hash=model_file.source_hash(),
        **compile_args,
    )


def test_matmul_4096_on_sn10() -> None:
    program = _matmul(4096, 4096, 4096)
    report = build_report(program, get_target("sn10"))
    (section,) = report["sections"]
    (unit,) = section["units"]
    assert section["flops"] == 2 * 4096**3
    assert (unit["unroll"], unit["initiation_interval"], unit["bound"]) == (6, 1, "compute")
    assert (unit["parallel"], unit["copies"]) == ([32, 20, 1], 640)
    assert section["pcus"]["used"] == 640  # every PCU of sn10, a copy each
    # No link carries two operand streams: x's row streams (28.1 MB) and w's column streams
    # (75.0 MB) on links of their own, the loads and the store at the DRAM edge (no link).
    x_row, w_column = 1171456 * 6 * 4, 1171456 * 16 * 4  # vectors x elements x 4 bytes
    links = _link_loads(program)
    assert max(len([b for b in moved if b >= x_row]) for moved in links.values()) == 1
    assert max(sum(moved) for moved in links.values()) < w_column + 8 * 274 * 96 * 4
    assert section["link_cycles"] < section["dram_cycles"] < section["compute_cycles"]
    assert section["bound"] == "compute"
    assert section["fraction_of_peak"] >= 0.60  # issue 16: >= 60% of peak
    assert section["fraction_of_peak"] <= section["roofline_fraction"] < 0.66
    assert report["total"]["fraction_of_peak"] == section["fraction_of_peak"]


def test_matmul_bf16_on_sn10_at_60_percent_of_the_bf16_peak() -> None:
    """The 4096^3 matmul in bf16 on sn10 at >= 60% of the bf16 peak (issue 17), under the
    bound the target's published figures allow (65.6%). The bf16 multiplier reads both bf16
    operands in one stage (six copies of the body down the pipeline, where a widening cast
    stage an operand left two) and the f32 accumulator leaves the matmul rounded to bf16 (no
    spill and no cast section, fuse-casts): 17.6% before them."""
    target = get_target("sn10")
    flops = 2 * 4096**3
    compulsory = 3 * 4096 * 4096 * 2  # bf16 x and w in, the bf16 result out, once each
    at_peak = flops / target.peak_flops_of("bf16")  # 319.5 TFLOPS: seconds
    through_dram = compulsory / (target.dram_gbps * 1e9)  # 153.6 GB/s
    bound = at_peak / max(at_peak, through_dram)
    assert 0.655 < bound < 0.657  # the same 65.6% as fp32's: half the bytes, twice the peak
    report = build_report(_matmul(4096, 4096, 4096, "bf16"), target)
    (matmul,) = report["sections"]
    (unit,) = matmul["units"]
    assert unit["unroll"] == 6
    assert 0.60 <= report["total"]["fraction_of_peak"] <= bound


def test_matmul_in_the_4096_mapping_passes_rdu_test(tmp_path: Path) -> None:
    """The smallest matmul that sn10 maps like the 4096^3 one, through rdu-test: the emulator
    runs the PEF's copies and routes against torch. The same grid (parallelize-units' threshold
    at 1: [32, 20, 1], 6 rows by 16 columns a copy) and the same layout: x and w in enough PMUs
    for a stream a line and one at the DRAM edge (x: 33 of 512 KiB, so k > 21,845 at 192 rows;
    w: 41, k > 16,384 at 320 columns), so k = 22,528."""
    m, k, n = 192, 22528, 320
    program = _matmul(m, k, n, min_vectors=1)
    (section,) = program.sections
    (pcu,) = section.pcus
    assert pcu.parallel == [32, 20, 1]
    multicast = [r for r in section.routes if r.taps and r.src[0] == "pmu"]
    assert len(multicast) == 32 + 40  # a stream along each row, one down each column
    for route in multicast:
        assert len({x for x, _ in route.hops}) == 1 or len({y for _, y in route.hops}) == 1
    assert all(len(r.hops) == 1 for r in section.routes if "dram" in (r.src[0], r.dst[0]))
    pef = tmp_path / "matmul.pef"
    pef.write_bytes(encode_pef(program))
    report = rdu_test(ROOT / "examples/matmul/model.py", pef, "--k", str(k), "--n", str(n))
    assert "output.0" in judged(report, "forward")


def test_mlp_training_step_at_batch_256_on_sn10() -> None:
    args = {"batch_size": 256, "hidden": 128, "classes": 10}
    report = report_for(ROOT / "examples/mlp/model.py", args, inference=False, arch="sn10")
    assert [s["name"] for s in report["sections"]] == ["forward", "backward", "optimizer"]
    for section in report["sections"]:
        assert section["fraction_of_peak"] <= section["roofline_fraction"]
    total = report["total"]
    assert total["flops"] > 10e6
    assert total["fraction_of_peak"] >= 0.0015
    # Whatever the mapping: even if parameters, optimizer state and activations never left the
    # chip, the batch itself (256 x 64 f32 inputs, 256 i64 targets) must come in from DRAM.
    target = get_target("sn10")
    batch_bytes = 256 * 64 * 4 + 256 * 8
    dram_cycles = batch_bytes / (target.dram_gbps / target.clock_ghz)
    compute_cycles = total["flops"] / target.peak_flops_per_cycle
    assert compute_cycles / dram_cycles < 0.16  # < 20%: the MLP's goal cannot be met
    # What the step's own off-chip traffic allows at most: under that bound (co-resident, the
    # step moves the batch twice, the output and the loss: 7%; 1.8% when every section's
    # symbols crossed DRAM).
    assert total["roofline_fraction"] < compute_cycles / dram_cycles
