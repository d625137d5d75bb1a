"""GPT's modelled training step on sn10: bf16-mixed faster than fp32 (issue 17).

Each precision compiled in this process as ``rdu-compile examples/gpt/model.py --arch sn10
[--precision bf16-mixed]`` would (its compile flags, so the report judges it at its precision);
the step is the report's total, every section once. bf16-mixed gains from its matmuls at the
bf16 rate (bf16 operands read by the bf16 multiplier, no widening stage) and from the casts
fused into their neighbours (fuse-casts); before those it was 148.5 us against fp32's 128.6 us.
"""

from __future__ import annotations

from pathlib import Path

from compiler.driver import compile_in_memory
from compiler.report import build_report
from compiler.targets import get_target
from tools.rdu_compile import compile_flags, model_spec

GPT = Path(__file__).resolve().parents[2] / "examples/gpt/model.py"


def step_cycles(precision: str) -> tuple[int, dict[str, int]]:
    """The modelled step of the GPT example on sn10 at ``precision``: total cycles, and each
    section's."""
    target = get_target("sn10")
    _, spec = model_spec(str(GPT), [], False, 16, 0, False, target, precision)
    flags = compile_flags("sn10", 16, False, False, 1, [], precision)
    program = compile_in_memory(spec, inference=False, target=target, flags=flags)
    report = build_report(program, target)
    assert report["precision"] == precision
    sections = {s["name"]: s["cycles"] for s in report["sections"]}
    return report["total"]["cycles"], sections


def test_gpt_bf16_mixed_step_is_faster_than_fp32_on_sn10() -> None:
    fp32, fp32_sections = step_cycles("fp32")
    bf16, bf16_sections = step_cycles("bf16-mixed")
    assert bf16 < fp32, (bf16_sections, fp32_sections)
    # the forward and backward are where the precision differs; the optimizer is fp32 in both
    assert bf16_sections["backward"] < fp32_sections["backward"]
