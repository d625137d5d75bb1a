"""``rdu-compile --inference --precision bf16-mixed``: the forward as training's bf16-mixed
forward, traced under ``torch.autocast(device_type="cpu", dtype=torch.bfloat16)`` (fp32
weights, autocast's casts explicit in the graph, matmuls on bf16 operands accumulating in fp32);
``rdu-test`` passes it against torch under the same autocast and fails an emulator that
truncates to bf16 instead of rounding."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_helpers import MLP, ROOT, compile_mlp, in_process, rdu_test
from test_mlp_bf16_mixed import truncate_to_bf16

import runtime.fabric as fabric_module
from runtime.pef import read_pef
from tools.rdu_run import Run
from tools.rdu_test import check_against_torch

GPT = ROOT / "examples" / "gpt" / "model.py"
SMALL = ["--n-embd", "32", "--block-size", "16", "--n-head", "2"]


@pytest.fixture(scope="module")
def mixed_pef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mixed-inference")
    return compile_mlp(out, "--inference", "--precision", "bf16-mixed", "--pef-name", "mlp-mi")


def test_fp32_weights_bf16_matmuls_and_rdu_test_passes(mixed_pef: Path) -> None:
    program = read_pef(mixed_pef)
    dtypes = {s.name: s.dtype for s in program.meta.symbols}
    assert dtypes["fc1.weight"] == "f32" and dtypes["input.0"] == "f32"
    assert dtypes["output.0"] == "bf16"  # autocast's linear
    matmuls = [p for s in program.sections for p in s.pcus if p.combiner == "add"]
    for unit in matmuls:  # fp32 weights and input rounded to bf16, multiplied in fp32
        casts = [st.dtype for st in unit.stages if st.op == "cast"]
        products = [st.dtype for st in unit.stages if st.op == "mul"]
        # the bf16 multiplier: bf16 operands, an exact f32 product (no widening stage)
        assert casts and set(casts) == {"bf16"} and products == ["f32"], unit.name
        assert unit.dtype == "f32", unit.name
    report = rdu_test(MLP, mixed_pef)
    assert [t["name"] for t in report["tensors"] if t["ok"]] == ["output.0"]


def test_rdu_test_fails_a_truncating_emulator(
    mixed_pef: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fabric_module, "round_to_bf16", truncate_to_bf16)
    opts = {"seed": 0, "init_ckpt_path": None, "lr": None, "momentum": None}
    run = Run(str(MLP), [], debug=True, pef_path=str(mixed_pef), weight_decay=None, **opts)
    rows = check_against_torch(run)
    assert [r.name for r in rows if not r.ok] == ["output.0"]


def test_gpt_bf16_mixed_inference_passes_rdu_test(tmp_path: Path) -> None:
    result = in_process(
        "rdu-compile", str(GPT), "--inference", "--precision", "bf16-mixed", "-b", "2",
        "--output-folder", str(tmp_path), *SMALL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = rdu_test(GPT, tmp_path / "gpt" / "gpt.pef", *SMALL)
    assert [t["name"] for t in report["tensors"] if t["ok"]] == ["output.0"]
