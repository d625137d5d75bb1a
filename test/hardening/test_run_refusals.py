"""rdu-run refuses a checkpoint or a batch that does not fit the PEF, naming the tensor.

Checkpoints load with ``torch.load(weights_only=True)``: one that would run code is refused and
the code never runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hardening_helpers import MLP, in_process, one_line_error, tools, write_model
from torch import nn


class _RunsCode:
    """Unpickling this would create ``marker`` (what a malicious checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def _mlp_state(hidden: int = 128) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential()
    model.fc1 = nn.Linear(64, hidden)
    model.fc2 = nn.Linear(hidden, 10)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _checkpoints(folder: Path) -> dict[str, tuple[Path, list[str]]]:
    """name -> (checkpoint file, fragments the one-line error must hold)."""
    folder.mkdir()
    cases: dict[str, tuple[object, list[str]]] = {}
    cases["other-width"] = (
        {"model": _mlp_state(hidden=32), "optimizer": None, "step": 0},
        ["tensor 'fc1.weight' has shape [32, 64], the PEF expects [128, 64]"],
    )
    cases["other-model"] = (
        {"model": nn.Conv2d(1, 4, 3).state_dict(), "optimizer": None, "step": 0},
        ["missing tensor 'fc1.weight' (the PEF expects [128, 64] f32)"],
    )
    missing = _mlp_state()
    del missing["fc2.bias"]
    cases["missing-tensor"] = (
        {"model": missing, "optimizer": None, "step": 3},
        ["missing tensor 'fc2.bias'"],
    )
    misshaped = _mlp_state()
    misshaped["fc2.bias"] = torch.zeros(11)
    cases["mis-shaped"] = (
        {"model": misshaped, "optimizer": None, "step": 3},
        ["tensor 'fc2.bias' has shape [11], the PEF expects [10]"],
    )
    cases["runs-code"] = (
        {"model": _mlp_state(), "optimizer": _RunsCode(folder / "pwned"), "step": 0},
        ["not a readable checkpoint: it holds Python objects (io.open) that loading would run"],
    )
    out = {}
    for name, (payload, fragments) in cases.items():
        path = folder / f"{name}.pt"
        torch.save(payload, path)
        out[name] = (path, fragments)
    (folder / "text.pt").write_text("not a checkpoint\n")
    out["not-a-checkpoint"] = (folder / "text.pt", ["not a readable checkpoint"])
    out["no-file"] = (folder / "none.pt", ["no such checkpoint file"])
    return out


DATA = """\
import importlib.util

import numpy as np
import torch

_spec = importlib.util.spec_from_file_location("rdu_example_mlp", {mlp!r})
_mlp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mlp)
model, loss, optimizer, add_args = _mlp.model, _mlp.loss, _mlp.optimizer, _mlp.add_args


def data(split, args):
    for (x,), (y,) in _mlp.data(split, args):
        yield {batch}
"""

BATCHES = {
    "short-rows": ("(x[:, :32],), (y,)", ["'input.0' has shape [16, 32]", "expects [16, 64]"]),
    "complex": ("(x.to(torch.complex64),), (y,)", [
        "input 'input.0' is complex64 [16, 64], the PEF expects f32 [16, 64]"
    ]),
    "float-labels": ("(x,), (y.float(),)", [
        "label 'target.0' is float32 [16], the PEF expects i64 [16]"
    ]),
    "float64-inputs": ("(x.double(),), (y,)", [
        "input 'input.0' is float64 [16, 64], the PEF expects f32 [16, 64]: convert it in data()"
    ]),
    "int32-labels": ("(x,), (y.int(),)", [
        "label 'target.0' is int32 [16], the PEF expects i64 [16]: convert it in data()"
    ]),
    "two-inputs": ("(x, x), (y,)", ["data() gave 2 inputs, the PEF takes 1"]),
    "bare-inputs": ("x, (y,)", ["data() must yield ((inputs...), (targets...)) pairs of tuples"]),
}  # fmt: skip


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, mlp_pef: Path) -> dict:
    root = tmp_path_factory.mktemp("run-refusals")
    checkpoints = _checkpoints(root / "ckpt")
    commands = [
        ("rdu-run", str(MLP), "--pef", str(mlp_pef), "--test", "--init-ckpt-path", str(path))
        for path, _ in checkpoints.values()
    ]
    for name, (batch, _) in BATCHES.items():
        model = write_model(root / name, DATA.format(mlp=str(MLP), batch=batch))
        commands.append(  # another model.py of the same structure: its data() differs
            ("rdu-run", str(model), "--pef", str(mlp_pef), "--test", "--allow-source-change")
        )
    # One as a real process (the exit status and stderr a shell sees), the rest in this one.
    results = [*tools(commands[0]), *(in_process(*command) for command in commands[1:])]
    fragments = [f for _, f in checkpoints.values()] + [f for _, f in BATCHES.values()]
    names = [*checkpoints, *BATCHES]
    return {
        "results": dict(zip(names, zip(results, fragments, strict=True), strict=True)),
        "marker": root / "ckpt" / "pwned",
        "paths": {name: path for name, (path, _) in checkpoints.items()},
    }


@pytest.mark.parametrize(
    "case",
    ["other-width", "other-model", "missing-tensor", "mis-shaped", "runs-code",
     "not-a-checkpoint", "no-file"],
)  # fmt: skip
def test_bad_checkpoint_is_refused_naming_it(outcomes: dict, case: str) -> None:
    result, fragments = outcomes["results"][case]
    error = one_line_error(result)
    assert error.startswith(f"rdu-run: error: {outcomes['paths'][case]}: "), error
    for fragment in fragments:
        assert fragment in error, error
    assert "test run passed" not in result.stdout


def test_a_checkpoint_never_runs_code(outcomes: dict) -> None:
    assert outcomes["results"]["runs-code"][0].returncode == 1
    assert not outcomes["marker"].exists()
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(outcomes["paths"]["runs-code"], weights_only=True)
    assert not outcomes["marker"].exists()


@pytest.mark.parametrize("case", list(BATCHES))
def test_bad_batch_names_the_input_and_both_shapes(outcomes: dict, case: str) -> None:
    result, fragments = outcomes["results"][case]
    error = one_line_error(result)
    assert error.startswith("rdu-run: error: "), error
    for fragment in fragments:
        assert fragment in error, error
