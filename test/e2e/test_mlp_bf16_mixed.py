"""The MLP example at ``rdu-compile --precision bf16-mixed``: rdu-test passes it against torch
under ``torch.autocast(device_type="cpu", dtype=torch.bfloat16)``, fails it when the emulator
truncates to bf16 instead of rounding, and it trains (fp32 master weights in the checkpoint)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from e2e_helpers import MLP, compile_mlp, in_process, rdu_test

import runtime.fabric as fabric_module
from runtime.dtypes import bf16
from runtime.pef import read_pef
from tools.rdu_run import Run
from tools.rdu_test import check_against_torch


@pytest.fixture(scope="module")
def bf16_pef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bf16")
    return compile_mlp(out, "--precision", "bf16-mixed", "--pef-name", "mlp-bf16")


def test_the_pef_holds_bf16_activations_and_fp32_state(bf16_pef: Path) -> None:
    program = read_pef(bf16_pef)
    dtypes = {s.name: s.dtype for s in program.meta.symbols}
    assert "--precision=bf16-mixed" in program.meta.compile_flags
    assert dtypes["saved.relu"] == "bf16" and dtypes["output.0"] == "bf16"
    for name, dtype in dtypes.items():  # master weights, gradients, optimizer state, loss
        if name.startswith(("fc1.", "fc2.")) or name == "loss":
            assert dtype == "f32", name


def test_rdu_test_passes_against_torch_autocast(bf16_pef: Path) -> None:
    report = rdu_test(MLP, bf16_pef)
    bf16_rows = [t for t in report["tensors"] if t["name"] in ("saved.relu", "output.0")]
    assert bf16_rows and all(t["ok"] for t in bf16_rows)


def truncate_to_bf16(x: np.ndarray) -> np.ndarray:
    """A wrong rounding to bf16: the low 16 bits of the float32 dropped (toward zero)."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    return (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32).astype(bf16())


def test_rdu_test_fails_a_truncating_emulator(
    bf16_pef: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fabric_module, "round_to_bf16", truncate_to_bf16)
    opts = {"seed": 0, "init_ckpt_path": None, "lr": None, "momentum": None}
    run = Run(str(MLP), [], debug=True, pef_path=str(bf16_pef), weight_decay=None, **opts)
    rows = check_against_torch(run)
    failed = {r.name for r in rows if not r.ok}
    assert "saved.t_1" in failed, [(r.name, r.mismatched) for r in rows]  # fc2.weight in bf16


def test_it_trains_and_checkpoints_fp32_master_weights(bf16_pef: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    result = in_process(
        "rdu-run", str(MLP), "--pef", str(bf16_pef), "--num-steps", "60", "--log-every", "10",
        "--ckpt-dir", str(ckpt),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with (ckpt / "metrics.csv").open() as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert losses[-1] < 0.5 * losses[0], losses
    state = torch.load(ckpt / "last.pt")["model"]
    assert all(v.dtype == torch.float32 for v in state.values())


def test_bf16_inference_pef_runs_a_bf16_mixed_checkpoint(bf16_pef: Path, tmp_path: Path) -> None:
    pef = compile_mlp(tmp_path, "--inference", "--precision", "bf16", "--pef-name", "mlp-bf16i")
    program = read_pef(pef)
    dtypes = {s.name: s.dtype for s in program.meta.symbols}
    assert dtypes["fc1.weight"] == "bf16" and dtypes["input.0"] == "bf16"
    report = rdu_test(MLP, pef)  # against the torch model in bf16
    assert all(t["ok"] for t in report["tensors"])
    ckpt = tmp_path / "ckpt"
    trained = in_process(
        "rdu-run", str(MLP), "--pef", str(bf16_pef), "--num-steps", "100", "--ckpt-dir", str(ckpt)
    )
    assert trained.returncode == 0, trained.stderr
    results = tmp_path / "results"
    result = in_process(
        "rdu-run", str(MLP), "--pef", str(pef), "--inference",
        "--init-ckpt-path", str(ckpt / "last.pt"), "--results-dir", str(results),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.rsplit("accuracy ", 1)[1].split()[0])
    assert accuracy > 0.85, result.stdout


def test_bf16_precisions_refused_where_not_supported(tmp_path: Path) -> None:
    result = in_process(
        "rdu-compile", str(MLP), "--precision", "bf16", "--output-folder", str(tmp_path)
    )
    assert result.returncode == 1 and "add --inference" in result.stderr


def test_the_report_says_the_precision(bf16_pef: Path) -> None:
    import json

    report = json.loads((bf16_pef.parent / "report.json").read_text())
    assert report["precision"] == "bf16-mixed"
    log = (bf16_pef.parent / "mlp-bf16.log").read_text()
    assert "(bf16), DRAM" in log and "precision bf16-mixed" in log  # the bf16 peak
    assert report["target"]["peak_dtype"] == "bf16"
    # plasticine (the default) has no bf16 rate: its bf16 peak is the f32 one, 64 PCUs x 16
    # lanes x 6 stages x 2 FLOPs at 1 GHz.
    assert report["target"]["peak_flops"] == 64 * 16 * 6 * 2 * 1e9


def test_a_faulty_bf16_backward_unit_is_localized(
    bf16_pef: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The divergence search runs torch's own error of every unit it judges on the autocast
    graph: a backward unit 10% off is named, where OwnError used to crash on the loss's
    gradient ("expected scalar type Float but found Double": autocast's _to_copy(x,
    dtype=torch.float32) left float32 among the float64 values)."""
    from click.testing import CliRunner

    from tools.rdu_test import rdu_test as rdu_test_cli

    program = read_pef(bf16_pef)
    names = [p.name for s in program.sections if s.kind == "backward" for p in s.pcus]
    target = [n for n in names if n.startswith("matmul")][-1]  # after the loss's gradient
    write = fabric_module._write

    def faulty(plan, buffers, array):  # noqa: ANN001
        if f"'{target}'" in plan.label or f"'{target} copy " in plan.label:
            array = np.asarray(array)  # 10% off, in its own dtype (a bf16 matmul result)
            array = (array * np.float32(1.1)).astype(array.dtype)
        return write(plan, buffers, array)

    monkeypatch.setattr(fabric_module, "_write", faulty)
    result = CliRunner().invoke(rdu_test_cli, [str(MLP), "--pef", str(bf16_pef)])
    assert result.exit_code == 1, result.output
    found = next(x for x in result.output.splitlines() if x.startswith("first divergence:"))
    assert found.startswith("first divergence: backward unit ") and target in found, found
