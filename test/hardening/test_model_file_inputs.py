"""What rdu-run takes from the model file is checked against the PEF, never dropped or cast
without a word: the model's ``optimizer()`` (its kind, the settings compiled into the PEF, one
value of each hyperparameter, the parameters the PEF updates), hyperparameters as the PEF's
float32, and ``data()``'s batches (CPU tensors or arrays, as many as the PEF takes). A failure
at the first batch writes no checkpoint: nothing was trained, and a ``last.pt`` there stays. A
path to read (a PEF, a checkpoint, a model or target file) must name a regular file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hardening_helpers import DROPOUT_MLP, MLP, compile_model, in_process, one_line_error, tools

HEAD = f"""\
import importlib.util

import torch

_spec = importlib.util.spec_from_file_location("rdu_example_mlp", {str(MLP)!r})
_mlp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mlp)
model, loss, optimizer, add_args = _mlp.model, _mlp.loss, _mlp.optimizer, _mlp.add_args
example_inputs, example_targets, data = _mlp.example_inputs, _mlp.example_targets, _mlp.data
"""

OPTIMIZERS = {
    "adam": ("torch.optim.Adam(params, lr=0.1)", "the model's optimizer() is Adam, the PEF was "
             "compiled for 'sgd'"),
    "nesterov": ("torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True)",
                 "the model's optimizer() is SGD with nesterov=True (not supported yet)"),
    "maximize": ("torch.optim.SGD(params, lr=0.1, momentum=0.9, maximize=True)",
                 "the model's optimizer() is SGD with maximize=True (not supported yet)"),
    "groups": ("(lambda ps: torch.optim.SGD([{'params': ps[:2], 'lr': 0.5}, {'params': "
               "ps[2:]}], lr=0.1, momentum=0.9))(list(params))",
               "the model's optimizer() has param groups with different lr (0.1, 0.5), the PEF "
               "takes one"),
    "partial": ("torch.optim.SGD(list(params)[:2], lr=0.1, momentum=0.9)",
                "the PEF's optimizer updates 'fc2.bias', the model's optimizer() does not hold it "
                "(2 such)"),
    "foreign": ("torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9)",
                "the model's optimizer() holds a tensor that is not a parameter of the model"),
}  # fmt: skip

DATA = {
    "a-str": ("yield ('abc',), (y,)", "data() gave 'input.0' as a str, not a torch tensor or "
              "numpy array"),
    "a-list": ("yield (x.tolist(),), (y,)", "data() gave 'input.0' as a list, not a torch "
               "tensor or numpy array"),
    "on-meta": ("yield (x.to('meta'),), (y,)", "data() gave 'input.0' on device meta; give CPU "
                "tensors"),
    "two-targets": ("yield (x,), (y, y)", "data() gave 2 targets, the PEF takes 1"),
    "no-target": ("yield (x,), ()", "data() gave 0 targets, the PEF takes 1"),
}  # fmt: skip


def model_with(root: Path, name: str, body: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(HEAD + body)
    return folder / "model.py"


def run(model: Path, pef: Path, ckpt: Path, *extra: str):
    return in_process(
        "rdu-run", str(model), "--pef", str(pef), "--ckpt-dir", str(ckpt), "--num-steps", "3",
        "--allow-source-change", *extra,
    )  # fmt: skip


@pytest.mark.parametrize("case", list(OPTIMIZERS))
def test_an_optimizer_the_pef_does_not_compute_is_refused(
    tmp_path: Path, mlp_pef: Path, case: str
) -> None:
    code, expected = OPTIMIZERS[case]
    model = model_with(tmp_path, case, f"\n\ndef optimizer(params, args):\n    return {code}\n")
    result = run(model, mlp_pef, tmp_path / "ck")
    assert one_line_error(result) == (
        f"rdu-run: error: {mlp_pef} does not fit the model of {model}: {expected}; recompile it"
    )
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("case", list(DATA))
def test_a_malformed_batch_stops_at_the_first_step_writing_nothing(
    tmp_path: Path, mlp_pef: Path, case: str
) -> None:
    code, expected = DATA[case]
    loop = "for (x,), (y,) in _mlp.data(split, args):"
    body = f"\n\ndef data(split, args):\n    {loop}\n        {code}\n"
    ckpt = tmp_path / "ck"
    ckpt.mkdir()
    (ckpt / "last.pt").write_bytes(b"a previous run's")
    result = run(model_with(tmp_path, case, body), mlp_pef, ckpt)
    assert one_line_error(result) == (
        f"rdu-run: error: {expected}; stopped at step 0; wrote no checkpoint: no step was trained"
    )
    assert (ckpt / "last.pt").read_bytes() == b"a previous run's"


def test_a_hyperparameter_beyond_float32_is_refused(tmp_path: Path, mlp_pef: Path) -> None:
    """1e39 is finite, but the PEF's float32 input would be inf: every weight would end NaN."""
    result = run(MLP, mlp_pef, tmp_path / "ck", "--lr", "1e39")
    assert one_line_error(result) == (
        "rdu-run: error: --lr 1e+39: lr must be a finite number >= 0 (as the PEF's float32, at "
        "most 3.4e38)"
    )
    model = model_with(
        tmp_path, "big-lr", "\n\ndef optimizer(params, args):\n    return torch.optim.SGD("
        "params, lr=1e39, momentum=0.9)\n",
    )  # fmt: skip
    assert one_line_error(run(model, mlp_pef, tmp_path / "ck")) == (
        "rdu-run: error: the model's optimizer has lr 1e+39: lr must be a finite number >= 0 (as "
        "the PEF's float32, at most 3.4e38)"
    )
    assert not (tmp_path / "ck").exists()


def test_momentum_for_a_pef_without_it_is_refused_not_dropped(tmp_path: Path) -> None:
    """AdamW has no momentum input: --momentum would change nothing."""
    pef = compile_model(DROPOUT_MLP, tmp_path / "out")
    result = in_process(
        "rdu-run", str(DROPOUT_MLP), "--pef", str(pef), "--num-steps", "1", "--momentum", "0.5",
        "--ckpt-dir", str(tmp_path / "ck"),
    )  # fmt: skip
    assert one_line_error(result) == (
        "rdu-run: error: --momentum 0.5: the PEF's optimizer (adamw) has no momentum (it is "
        "compiled from the model's optimizer(): recompile with one)"
    )
    assert not (tmp_path / "ck").exists()


def test_a_pipe_or_a_device_is_refused_instead_of_read_forever(
    tmp_path: Path, mlp_pef: Path
) -> None:
    """A named pipe would block the read, /dev/zero never ends (all memory): each path that is
    read, refused by name first. Run as processes, so that a regression fails by timeout."""
    pipe = tmp_path / "pipe.pt"
    os.mkfifo(pipe)
    model_pipe = tmp_path / "model.py"
    os.mkfifo(model_pipe)
    target_pipe = tmp_path / "target.toml"
    os.mkfifo(target_pipe)
    commands = {
        "rdu-run: error: /dev/zero: is a device, not a file": (
            "rdu-run", str(MLP), "--pef", "/dev/zero", "--test",
        ),
        f"rdu-run: error: {pipe}: is a named pipe, not a file": (
            "rdu-run", str(MLP), "--pef", str(mlp_pef), "--test", "--init-ckpt-path", str(pipe),
        ),
        f"rdu-run: error: {model_pipe}: is a named pipe, not a file": (
            "rdu-run", str(model_pipe), "--pef", str(mlp_pef), "--test",
        ),
        f"rdu-compile: error: target file {target_pipe}: is a named pipe, not a file": (
            "rdu-compile", str(MLP), "--arch", str(target_pipe), "--check",
        ),
    }  # fmt: skip
    for expected, result in zip(commands, tools(*commands.values()), strict=True):
        assert one_line_error(result) == expected
