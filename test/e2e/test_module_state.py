"""Every kind of module state compiles, trains beside torch, infers, is checkpointed and resumes:
non-persistent buffers, frozen parameters, tied parameters, unused parameters, and buffers the
forward updates. The models are in ``models/state.py`` (``--kind``); each test trains a few
steps with ``rdu-run`` (in this process), compares the checkpoint with torch trained on the same
batches, loads it into the torch model strictly, and resumes from it."""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from e2e_helpers import ROOT

from runtime.pef import read_pef
from tools.model_file import load_model_file

MODEL = ROOT / "test" / "e2e" / "models" / "state.py"
BATCH = 4
STEPS = 4  # one epoch of the model's data
RTOL = 1e-5

Compiled = Callable[..., Path]


def _command(name: str, *args: str) -> subprocess.CompletedProcess:
    """An rdu-* command run in this process (click's test runner): same code, exit status and
    output, without a second of imports each time."""
    from click.testing import CliRunner

    if name == "rdu-compile":
        from tools.rdu_compile import rdu_compile as command
    elif name == "rdu-run":
        from tools.rdu_run import rdu_run as command
    else:
        from tools.rdu_test import rdu_test as command
    result = CliRunner().invoke(command, list(args))
    return subprocess.CompletedProcess(
        [name, *args], result.exit_code, result.stdout, result.stderr
    )


def _ok(name: str, *args: str) -> str:
    result = _command(name, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Compiled:
    """``compiled(*model_args, inference=False)``: the PEF of ``state.py`` with these model
    arguments (``--kind ...``), compiled once."""
    cache: dict[tuple[object, ...], Path] = {}

    def compile_(*model_args: str, inference: bool = False) -> Path:
        key = (*model_args, inference)
        if key not in cache:
            out = tmp_path_factory.mktemp("state")
            extra = ["--inference"] if inference else []
            _ok("rdu-compile", str(MODEL), "-b", str(BATCH), "--output-folder", str(out),
                *extra, *model_args)  # fmt: skip
            cache[key] = out / "state" / "state.pef"
        return cache[key]

    return compile_


def _train(pef: Path, ckpt_dir: Path, steps: int, args: list[str], resume: Path | None = None):
    """``rdu-run`` training ``steps`` steps in all; the checkpoint it writes at the end."""
    extra = ["--init-ckpt-path", str(resume)] if resume else []
    _ok("rdu-run", str(MODEL), "--pef", str(pef), "--num-steps", str(steps),
        "--ckpt-dir", str(ckpt_dir), "--ckpt-every", "0", *extra, *args)  # fmt: skip
    return torch.load(ckpt_dir / "last.pt", weights_only=True)


def _torch_model(model_args: list[str]):
    """The torch model, its optimizer, the model file and its arguments, as rdu-run builds
    them from ``model_args``."""
    model_file = load_model_file(MODEL)
    parser = argparse.ArgumentParser()
    model_file.add_args(parser)
    args = parser.parse_args(model_args)
    args.batch_size, args.seed, args.epoch = BATCH, 0, 0
    torch.manual_seed(0)
    model = model_file.call("model", args)
    return model, model_file.call("optimizer", model.parameters(), args), model_file, args


def _torch_train(model_args: list[str], steps: int = STEPS):
    """The torch model and optimizer after ``steps`` steps on rdu-run's batches."""
    model, opt, model_file, args = _torch_model(model_args)
    model.train()
    for step, (inputs, targets) in enumerate(model_file.batches("train", args)):
        if step == steps:
            break
        opt.zero_grad()
        model_file.call("loss", model(*inputs), *targets).backward()
        opt.step()
    return model, opt


def _close(name: str, fabric: torch.Tensor, reference: torch.Tensor) -> None:
    """Within RTOL of the reference's largest magnitude (exactly equal for integers)."""
    assert fabric.shape == reference.shape, name
    if not reference.is_floating_point():
        assert torch.equal(fabric, reference), (name, fabric, reference)
        return
    error = (fabric - reference).abs().max().item()
    scale = reference.abs().max().item() or 1.0
    assert error <= RTOL * scale, f"{name}: max error {error:.3g} (scale {scale:.3g})"


def _matches_torch(checkpoint: dict, model_args: list[str]) -> torch.nn.Module:
    """The checkpoint is the state of the torch model and optimizer trained on the same batches
    (the torch model returned), and loads into a fresh torch model (strictly) and optimizer."""
    model, opt = _torch_train(model_args)
    reference = model.state_dict()
    assert set(checkpoint["model"]) == set(reference)
    for name, value in reference.items():
        _close(name, checkpoint["model"][name], value)
    expected = opt.state_dict()
    assert (
        checkpoint["optimizer"]["param_groups"][0]["params"]
        == expected["param_groups"][0]["params"]
    )
    assert set(checkpoint["optimizer"]["state"]) == set(expected["state"])
    for index, entry in expected["state"].items():
        for key, value in entry.items():
            _close(f"optimizer state {index}.{key}", checkpoint["optimizer"]["state"][index][key],
                   value)  # fmt: skip
    fresh, fresh_opt, _, _ = _torch_model(model_args)
    fresh.load_state_dict(checkpoint["model"])  # strict
    fresh_opt.load_state_dict(checkpoint["optimizer"])
    return model


def _trains_and_resumes(
    compiled: Compiled, tmp_path: Path, *model_args: str
) -> tuple[dict, torch.nn.Module, dict[str, torch.Tensor]]:
    """Train STEPS steps on the fabric and in torch and compare; resume STEPS/2 + STEPS/2 and
    compare with the straight run bit for bit. The checkpoint, the trained torch model and the
    torch model's initial state."""
    args = list(model_args)
    pef = compiled(*args)
    straight = _train(pef, tmp_path / "straight", STEPS, args)
    model = _matches_torch(straight, args)
    half = _train(pef, tmp_path / "half", STEPS // 2, args)
    resumed = _train(pef, tmp_path / "resumed", STEPS, args, resume=tmp_path / "half" / "last.pt")
    assert half["step"] == STEPS // 2 and resumed["step"] == straight["step"] == STEPS
    for name, value in straight["model"].items():
        assert torch.equal(resumed["model"][name], value), f"resumed {name} differs"
    for index, entry in straight["optimizer"]["state"].items():
        for key, value in entry.items():
            assert torch.equal(resumed["optimizer"]["state"][index][key], value), (index, key)
    initial = _torch_model(args)[0].state_dict()
    return straight, model, initial


def _infers(compiled: Compiled, tmp_path: Path, checkpoint: Path, *model_args: str) -> None:
    """An inference PEF run from ``checkpoint`` gives torch's eval-mode outputs."""
    args = list(model_args)
    results = tmp_path / "results"
    _ok("rdu-run", str(MODEL), "--pef", str(compiled(*args, inference=True)), "--inference",
        "--init-ckpt-path", str(checkpoint), "--results-dir", str(results), *args)  # fmt: skip
    model, _, model_file, namespace = _torch_model(args)
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["model"])
    model.eval()
    with torch.no_grad():
        batches = model_file.batches("test", namespace)
        expected = torch.cat([model(*inputs) for inputs, _ in batches])
    _close("outputs", torch.from_numpy(np.load(results / "outputs.npy")), expected)


def _symbols(pef: Path) -> dict[str, str]:
    return {s.name: s.role for s in read_pef(pef).meta.symbols}


# -- 1. non-persistent buffers ---------------------------------------------------------------

NON_PERSISTENT = ("--kind", "non_persistent")


def test_non_persistent_buffers_come_from_the_model(compiled: Compiled, tmp_path: Path) -> None:
    """Absent from checkpoints (which load strictly), taken from the model when training,
    resuming and inferring; the PEF keeps their digests, not their values."""
    checkpoint, model, _ = _trains_and_resumes(compiled, tmp_path, *NON_PERSISTENT)
    buffers = {"scale", "positions", "gain", "normalizer"}  # normalizer: bfloat16
    assert not buffers & set(checkpoint["model"])
    pef = compiled(*NON_PERSISTENT)
    meta = read_pef(pef).meta
    recorded = {meta.symbols[e.symbol].name: e.sha256 for e in meta.non_persistent}
    assert set(recorded) == buffers
    assert all(len(d) == 64 for d in recorded.values())
    for name in set(recorded) - {"normalizer"}:  # digests, not values (its 2 bytes may be anywhere)
        assert getattr(model, name).numpy().tobytes() not in pef.read_bytes()
    _infers(compiled, tmp_path, tmp_path / "straight" / "last.pt", *NON_PERSISTENT)


def test_non_persistent_buffers_must_match_the_compiled_values(
    compiled: Compiled, tmp_path: Path
) -> None:
    """A model whose non-persistent buffer differs from the one compiled is refused (one line,
    exit 1) when training, testing, resuming and inferring."""
    pef = compiled(*NON_PERSISTENT)
    inference = compiled(*NON_PERSISTENT, inference=True)
    _train(pef, tmp_path / "ck", 1, list(NON_PERSISTENT))
    resume = ["--init-ckpt-path", str(tmp_path / "ck" / "last.pt")]
    for extra in (
        ["--pef", str(pef), "--num-steps", "1", "--ckpt-dir", str(tmp_path / "other")],
        ["--pef", str(pef), "--test"],
        ["--pef", str(pef), "--num-steps", "2", "--ckpt-dir", str(tmp_path / "other"), *resume],
        ["--pef", str(inference), "--inference", *resume],
    ):
        result = _command("rdu-run", str(MODEL), *extra, *NON_PERSISTENT, "--scale", "2")
        assert result.returncode == 1, result.stdout + result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "buffer 'scale'" in result.stderr and "compiled for" in result.stderr
    assert not (tmp_path / "other").exists()


def test_rdu_test_runs_with_non_persistent_buffers(compiled: Compiled) -> None:
    out = _ok("rdu-test", str(MODEL), "--pef", str(compiled(*NON_PERSISTENT)), *NON_PERSISTENT)
    assert "fc.weight.grad" in out


# -- 2. frozen parameters --------------------------------------------------------------------


@pytest.mark.parametrize(
    "model_args",
    [
        ("--optimizer", "sgd"),
        ("--optimizer", "adamw"),
        ("--optimizer", "sgd", "--trainable-only"),
        ("--optimizer", "adamw", "--trainable-only"),
    ],
    ids=["sgd", "adamw", "sgd-trainable-only", "adamw-trainable-only"],
)
def test_frozen_parameters_are_never_updated(
    compiled: Compiled, tmp_path: Path, model_args: tuple[str, ...]
) -> None:
    """No gradient, no optimizer state, not even weight decay; still in the checkpoint. The
    checkpoint's optimizer state fits the model's optimizer, whether it was given every
    parameter or the trainable ones only (as fine-tuning scripts do)."""
    args = ("--kind", "frozen", *model_args)
    checkpoint, _, initial = _trains_and_resumes(compiled, tmp_path, *args)
    for name in ("features.weight", "features.bias"):
        assert torch.equal(checkpoint["model"][name], initial[name]), name
    assert not torch.equal(checkpoint["model"]["head.weight"], initial["head.weight"])
    symbols = _symbols(compiled(*args))
    assert symbols["features.weight"] == "parameter" and "head.weight.grad" in symbols
    assert not [s for s in symbols if s.startswith("features.") and s.count(".") > 1]
    _infers(compiled, tmp_path, tmp_path / "straight" / "last.pt", *args)


# -- 3. tied parameters ----------------------------------------------------------------------


def test_tied_parameters_get_one_summed_gradient_and_one_update(
    compiled: Compiled, tmp_path: Path
) -> None:
    """The embedding and the head are one tensor: one symbol, one gradient (the sum of both
    uses'), one update, matching torch; both names in the checkpoint."""
    args = ("--kind", "tied")
    checkpoint, _, initial = _trains_and_resumes(compiled, tmp_path, *args)
    assert torch.equal(checkpoint["model"]["embed.weight"], checkpoint["model"]["head.weight"])
    assert not torch.equal(checkpoint["model"]["embed.weight"], initial["embed.weight"])
    symbols = _symbols(compiled(*args))
    assert "embed.weight.grad" in symbols and "embed.weight.momentum_buffer" in symbols
    assert not [s for s in symbols if s.startswith("head.")]
    _infers(compiled, tmp_path, tmp_path / "straight" / "last.pt", *args)


# -- 4. unused parameters --------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_unused_parameters_are_left_alone(
    compiled: Compiled, tmp_path: Path, optimizer: str
) -> None:
    """A parameter the forward never reads has no gradient in torch, so no weight decay, no
    momentum, no AdamW step, no optimizer state: the fabric leaves it as it is too."""
    args = ("--kind", "unused", "--optimizer", optimizer)
    checkpoint, _, initial = _trains_and_resumes(compiled, tmp_path, *args)
    for name in ("spare.weight", "spare.bias"):
        assert torch.equal(checkpoint["model"][name], initial[name]), name
    symbols = _symbols(compiled(*args))
    assert symbols["spare.weight"] == "parameter"
    assert not [s for s in symbols if s.startswith("spare.") and s.count(".") > 1]
    _infers(compiled, tmp_path, tmp_path / "straight" / "last.pt", *args)


def test_an_unused_parameter_stays_in_a_program_cut_into_pieces(
    compiled: Compiled, tmp_path: Path
) -> None:
    """On ``tiny`` (8 PCUs) each section is cut into pieces, none of which reads the unused
    parameter: it stays an argument of the first, so the program still names it, and rdu-test
    and rdu-run take the model (DINOv2's ``mask_token``, read only for masked inputs, was
    refused: "the model has parameter ... the PEF has none")."""
    args = ("--kind", "unused")
    pef = compiled(*args, "--arch", "tiny")
    program = read_pef(pef)
    assert len([s for s in program.sections if s.kind == "forward"]) > 1
    assert _symbols(pef)["spare.weight"] == "parameter"
    _ok("rdu-test", str(MODEL), "--pef", str(pef), *args)
    _ok("rdu-run", str(MODEL), "--pef", str(pef), "--num-steps", "2", "--ckpt-dir",
        str(tmp_path / "ckpt"), *args)  # fmt: skip
    saved = torch.load(tmp_path / "ckpt" / "last.pt")["model"]
    assert "spare.weight" in saved


# -- 5. buffers the forward updates ----------------------------------------------------------


def test_buffers_the_forward_updates_follow_torch(compiled: Compiled, tmp_path: Path) -> None:
    """A running mean and an integer step counter updated in place in training: updated on the
    fabric each step like torch's, saved, resumed; inference reads them without updating."""
    args = ("--kind", "updated")
    checkpoint, _, initial = _trains_and_resumes(compiled, tmp_path, *args)
    assert checkpoint["model"]["steps"].item() == STEPS
    assert not torch.equal(checkpoint["model"]["running_mean"], initial["running_mean"])
    roles = _symbols(compiled(*args))
    assert roles["running_mean"] == roles["steps"] == "buffer"
    _infers(compiled, tmp_path, tmp_path / "straight" / "last.pt", *args)
