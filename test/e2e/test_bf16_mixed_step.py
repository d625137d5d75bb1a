"""GPT's modelled training step: bf16-mixed against fp32 (issue 17).

Each precision compiled in this process as ``rdu-compile examples/gpt/model.py --arch sn10
[--precision bf16-mixed]`` would (its compile flags, so the report judges it at its precision);
the step is the report's total, every section once. bf16-mixed gains from its matmuls at the
bf16 rate (bf16 operands read by the bf16 multiplier, no widening stage) and from the casts
fused into their neighbours (fuse-casts); before those it was 148.5 us against fp32's 128.6 us.
Routing by bytes (issue 16) then took fp32's backward on sn10 from 84.5k to 64.9k cycles, and
bf16-mixed's, with every PCU taken (its casts), stays at 75.7k: on sn10 the whole bf16 step is
not faster yet (152k against 144k cycles at PEF format 2, whose sections cost less to load;
155k against 146k at format 1), its forward is; on the example's own target
(plasticine, no bf16 rate: half the bytes) the whole step is.
"""

from __future__ import annotations

from pathlib import Path

from compiler.driver import compile_in_memory
from compiler.report import build_report
from compiler.targets import get_target
from tools.rdu_compile import compile_flags, model_spec

GPT = Path(__file__).resolve().parents[2] / "examples/gpt/model.py"


def step_cycles(precision: str, arch: str = "sn10") -> tuple[int, dict[str, int], dict[str, int]]:
    """The modelled step of the GPT example on ``arch`` at ``precision``: total cycles, each
    section's, and each section's cycles loading it (its bytes read from DRAM)."""
    target = get_target(arch)
    _, spec = model_spec(str(GPT), [], False, 16, 0, False, target, precision)
    flags = compile_flags(arch, 16, False, False, 1, [], precision)
    program = compile_in_memory(spec, inference=False, target=target, flags=flags)
    report = build_report(program, target)
    assert report["precision"] == precision
    sections = {s["name"]: s["cycles"] for s in report["sections"]}
    loads = {s["name"]: s["load_cycles"] for s in report["sections"]}
    return report["total"]["cycles"], sections, loads


def test_gpt_bf16_mixed_forward_is_faster_than_fp32_on_sn10() -> None:
    _, fp32_sections, fp32_loads = step_cycles("fp32")
    _, bf16_sections, bf16_loads = step_cycles("bf16-mixed")
    assert bf16_sections["forward"] < fp32_sections["forward"], (bf16_sections, fp32_sections)
    # The optimizer is fp32 in both: the same run. Its bytes differ by its symbols' numbers
    # (bf16-mixed has more symbols, and a number past 127 is two msgpack bytes): 45 bytes,
    # one cycle loading it on sn10.
    fp32_run = fp32_sections["optimizer"] - fp32_loads["optimizer"]
    assert bf16_sections["optimizer"] - bf16_loads["optimizer"] == fp32_run
    assert abs(bf16_loads["optimizer"] - fp32_loads["optimizer"]) <= 1


def test_gpt_bf16_mixed_step_is_faster_than_fp32_on_its_own_target() -> None:
    fp32, fp32_sections, _ = step_cycles("fp32", "plasticine")
    bf16, bf16_sections, _ = step_cycles("bf16-mixed", "plasticine")
    assert bf16 < fp32, (bf16_sections, fp32_sections)
