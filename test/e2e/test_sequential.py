"""A model whose top-level module is an ``nn.Sequential`` (``models/sequential.py``): its
parameters are ``0.weight``, ``2.bias``..., names that start with a digit. It compiles (training
and inference), passes rdu-test, trains as torch does on the same batches, and its checkpoint
loads strictly into the torch model."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from e2e_helpers import ROOT

from runtime.pef import read_pef
from tools.model_file import load_model_file
from tools.rdu_compile import rdu_compile
from tools.rdu_run import rdu_run
from tools.rdu_test import rdu_test

MODEL = ROOT / "test" / "e2e" / "models" / "sequential.py"
BATCH = 4
STEPS = 2  # one epoch of the model's data
RTOL = 1e-5


def _ok(command, *args: str) -> str:
    """Run an rdu-* command in this process; assert it succeeds; its stdout."""
    result = CliRunner().invoke(command, list(args))
    assert result.exit_code == 0, result.stdout + result.stderr
    return result.stdout


def _torch_model():
    """The torch model, its optimizer, the model file and its arguments, as rdu-run builds
    them."""
    model_file = load_model_file(MODEL)
    args = argparse.Namespace(batch_size=BATCH, seed=0, epoch=0)
    model = model_file.call("model", args)
    return model, model_file.call("optimizer", model.parameters(), args), model_file, args


def _close(name: str, fabric: torch.Tensor, reference: torch.Tensor) -> None:
    error = (fabric - reference).abs().max().item()
    scale = reference.abs().max().item() or 1.0
    assert error <= RTOL * scale, f"{name}: max error {error:.3g} (scale {scale:.3g})"


def test_sequential_model_compiles_trains_and_loads(tmp_path: Path) -> None:
    _ok(rdu_compile, str(MODEL), "-b", str(BATCH), "--output-folder", str(tmp_path))
    pef = tmp_path / "sequential" / "sequential.pef"
    names = {s.name for s in read_pef(pef).meta.symbols}
    assert {"0.weight", "0.bias", "2.weight", "2.bias"} <= names
    assert "rdu-test: PASS" in _ok(rdu_test, str(MODEL), "--pef", str(pef))

    _ok(rdu_run, str(MODEL), "--pef", str(pef), "--num-steps", str(STEPS),
        "--ckpt-dir", str(tmp_path / "ckpt"), "--ckpt-every", "0")  # fmt: skip
    checkpoint = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)

    model, opt, model_file, args = _torch_model()
    model.train()
    for inputs, targets in model_file.batches("train", args):
        opt.zero_grad()
        model_file.call("loss", model(*inputs), *targets).backward()
        opt.step()
    reference = model.state_dict()
    assert set(checkpoint["model"]) == set(reference) == {"0.weight", "0.bias", "2.weight",
                                                          "2.bias"}  # fmt: skip
    for name, value in reference.items():
        _close(name, checkpoint["model"][name], value)
    fresh, fresh_opt, _, _ = _torch_model()
    fresh.load_state_dict(checkpoint["model"])  # strict
    fresh_opt.load_state_dict(checkpoint["optimizer"])

    _ok(rdu_compile, str(MODEL), "-b", str(BATCH), "--inference", "--pef-name", "inference",
        "--output-folder", str(tmp_path))  # fmt: skip
    results = tmp_path / "results"
    _ok(rdu_run, str(MODEL), "--pef", str(tmp_path / "inference" / "inference.pef"),
        "--inference", "--init-ckpt-path", str(tmp_path / "ckpt" / "last.pt"),
        "--results-dir", str(results))  # fmt: skip
    fresh.eval()
    with torch.no_grad():
        expected = torch.cat([fresh(*inputs) for inputs, _ in model_file.batches("test", args)])
    _close("outputs", torch.from_numpy(np.load(results / "outputs.npy")), expected)
