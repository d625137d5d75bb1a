"""The CNN examples end to end: LeNet-5 and a small ResNet compile for the default target, match
torch (rdu-test at its defaults), and train: LeNet to >= 90% test accuracy, the ResNet's loss falls
while its steps (BatchNorm running statistics included) track torch's."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import torch
from e2e_helpers import ROOT, in_process, judged, losses_beside_torch, rdu_test

from runtime.pef import read_pef
from runtime.session import TrainingSession
from tools.model_file import load_model_file

LENET = ROOT / "examples" / "lenet" / "model.py"
RESNET = ROOT / "examples" / "resnet" / "model.py"


def _rdu_test(model: Path, pef: Path) -> set[str]:
    """The tensors rdu-test judges within its default tolerances, section by section and end to
    end."""
    report = rdu_test(model, pef)
    return judged(report, "forward") | judged(report, "backward") | judged(report, "end to end")


def test_lenet_matches_torch(lenet_pef: Path) -> None:
    names = _rdu_test(LENET, lenet_pef)
    assert "loss" in names and "output.0" in names
    for param in ("features.0.weight", "features.3.bias", "classifier.5.weight"):
        assert f"{param}.grad" in names


def test_resnet_matches_torch(resnet_pef: Path) -> None:
    names = _rdu_test(RESNET, resnet_pef)
    for param in ("stem.0.weight", "layer1.bn2.weight", "layer2.shortcut.0.weight", "fc.bias"):
        assert f"{param}.grad" in names


def test_lenet_trains_to_90_percent(tmp_path: Path, lenet_pef: Path) -> None:
    run = in_process(
        "rdu-run", str(LENET), "--pef", str(lenet_pef), "--num-epochs", "3",
        "--ckpt-dir", str(tmp_path / "ck"), "--ckpt-every", "0",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    accuracies = [float(a) for a in re.findall(r"test acc ([0-9.]+)", run.stdout)]
    assert len(accuracies) == 3 and accuracies[-1] >= 0.90, run.stdout


def test_resnet_loss_falls_and_tracks_torch(resnet_pef: Path) -> None:
    model_file = load_model_file(RESNET)
    program = read_pef(resnet_pef)
    args = argparse.Namespace(
        batch_size=program.meta.batch_size, seed=0, epoch=0, width=16, classes=10
    )
    torch.manual_seed(0)
    model = model_file.call("model", args)
    session = TrainingSession(program, {k: v.numpy().copy() for k, v in model.state_dict().items()})
    optimizer = model_file.call("optimizer", model.parameters(), args)
    group = optimizer.param_groups[0]
    hyper = {k: group[k] for k in ("lr", "momentum", "weight_decay", "dampening")}
    batches = list(model_file.batches("train", args))[:40]
    # Later, a ReLU kink crossed the other way adds up: 15 steps.
    fabric_losses, torch_losses = losses_beside_torch(
        session, model_file, model, optimizer, batches[:15], hyper
    )
    np.testing.assert_allclose(fabric_losses, torch_losses, rtol=1e-4)
    state = session.state()
    for name, buffer in model.state_dict().items():
        if "running" in name:  # BatchNorm's statistics: forward outputs, updated every step
            np.testing.assert_allclose(state[name], buffer.numpy(), rtol=1e-4, atol=1e-6)
        if "num_batches_tracked" in name:
            assert int(state[name]) == 15
    later = [
        session.step({"input.0": x.numpy(), "target.0": y.numpy()}, hyper).loss
        for (x,), (y,) in batches[15:]
    ]
    assert np.mean(later[-5:]) < 0.5 * np.mean(fabric_losses[:5])  # it is learning
