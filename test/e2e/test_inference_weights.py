"""``rdu-compile --inference --weights CKPT`` on the MLP example: the PEF carries the weights,
``rdu-run --inference`` needs no checkpoint (``--init-ckpt-path`` replaces them, said on
stderr), ``rdu-pef`` shows them, and a checkpoint that does not fit is refused in one line."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from e2e_helpers import MLP, compile_mlp, in_process

from runtime.pef import read_pef
from tools.model_file import load_model_file


def _mlp(seed: int, hidden: int = 128) -> torch.nn.Module:
    torch.manual_seed(seed)
    return load_model_file(MLP).call("model", argparse.Namespace(hidden=hidden, classes=10))


def _torch_outputs(model: torch.nn.Module) -> np.ndarray:
    """The model's outputs over the example's test split, at rdu-run's batch (16)."""
    model_file = load_model_file(MLP)
    args = argparse.Namespace(hidden=128, classes=10, batch_size=16, seed=0, epoch=0)
    with torch.no_grad():
        return np.concatenate([model(x).numpy() for (x,), _ in model_file.batches("test", args)])


@pytest.fixture(scope="module")
def with_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A state_dict .pt (seed 1) and the fp32 inference PEF that holds it."""
    out = tmp_path_factory.mktemp("weights")
    torch.save(_mlp(1).state_dict(), out / "seed1.pt")
    pef = compile_mlp(out, "--inference", "--weights", str(out / "seed1.pt"))
    return out / "seed1.pt", pef


def test_rdu_run_inference_runs_the_embedded_weights(
    with_weights: tuple[Path, Path], tmp_path: Path
) -> None:
    _, pef = with_weights
    result = in_process("rdu-run", str(MLP), "--pef", str(pef), "--inference",
                        "--results-dir", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr and "note" not in result.stderr
    outputs = np.load(tmp_path / "outputs.npy")
    np.testing.assert_allclose(outputs, _torch_outputs(_mlp(1)), rtol=1e-5, atol=1e-5)
    assert not np.allclose(outputs, _torch_outputs(_mlp(0)), atol=1e-2)  # not the model's init


def test_init_ckpt_path_replaces_the_embedded_weights(
    with_weights: tuple[Path, Path], tmp_path: Path
) -> None:
    """An rdu-run checkpoint (``{"model", "optimizer", "step"}``) of other weights."""
    _, pef = with_weights
    other = tmp_path / "seed2.pt"
    torch.save({"model": _mlp(2).state_dict(), "optimizer": None, "step": 0}, other)
    result = in_process("rdu-run", str(MLP), "--pef", str(pef), "--inference",
                        "--init-ckpt-path", str(other), "--results-dir", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "weights of" in result.stderr and "replace the seed1.pt weights" in result.stderr
    outputs = np.load(tmp_path / "outputs.npy")
    np.testing.assert_allclose(outputs, _torch_outputs(_mlp(2)), rtol=1e-5, atol=1e-5)


def test_rdu_pef_shows_the_weights(with_weights: tuple[Path, Path]) -> None:
    from click.testing import CliRunner

    from tools.rdu_pef import rdu_pef

    _, pef = with_weights
    text = CliRunner().invoke(rdu_pef, [str(pef)]).stdout
    assert "weights: 4 tensors, 38440 bytes, from seed1.pt" in text  # 4 x ((64+1)*128 + (128+1)*10)
    assert "  weight fc1.weight f32[128,64]: 32768 bytes" in text
    only = CliRunner().invoke(rdu_pef, [str(pef), "--section", "weights"]).stdout
    assert "section forward" not in only and "weight fc2.bias f32[10]: 40 bytes" in only


def test_a_bf16_pef_holds_bf16_weights(with_weights: tuple[Path, Path], tmp_path: Path) -> None:
    weights, fp32 = with_weights
    pef = compile_mlp(tmp_path, "--inference", "--precision", "bf16", "--weights", str(weights))
    program = read_pef(pef)
    assert program.weights is not None and program.weights.source == "seed1.pt"
    assert {t.dtype for t in program.weights.tensors} == {"bf16"}
    fp32_weights = read_pef(fp32).weights
    assert fp32_weights is not None
    assert sum(len(t.data) for t in fp32_weights.tensors) == 2 * sum(
        len(t.data) for t in program.weights.tensors
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "--weights is for inference PEFs (add --inference)"),
        (("--inference",), "no such checkpoint file"),
    ],
)
def test_weights_refused_before_the_compile(tmp_path: Path, extra: tuple, message: str) -> None:
    result = in_process("rdu-compile", str(MLP), "--output-folder", str(tmp_path), *extra,
                        "--weights", str(tmp_path / "absent.pt"))  # fmt: skip
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_weights_of_another_model_refused_in_one_line(tmp_path: Path) -> None:
    torch.save(_mlp(0, hidden=64).state_dict(), tmp_path / "narrow.pt")
    result = in_process("rdu-compile", str(MLP), "--output-folder", str(tmp_path), "--inference",
                        "--weights", str(tmp_path / "narrow.pt"))  # fmt: skip
    assert result.returncode == 1
    assert (
        "narrow.pt: model: tensor 'fc1.weight' has shape [64, 64], the PEF expects [128, 64]"
        in (result.stderr)
    )
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "mlp" / "mlp.pef").exists()


def test_weights_model_stores_the_models_own(tmp_path: Path) -> None:
    """``--weights model``: model() as built at ``--seed`` (a model that loads pretrained
    weights itself), rounded to bf16 at ``--precision bf16``."""
    from runtime.weights import embedded_state

    pef = compile_mlp(tmp_path, "--inference", "--precision", "bf16", "--seed", "3",
                      "--weights", "model")  # fmt: skip
    program = read_pef(pef)
    assert program.weights is not None and program.weights.source == "model() at --seed 3"
    state = embedded_state(program)
    for name, tensor in _mlp(3).state_dict().items():
        np.testing.assert_array_equal(state[name], tensor.to(torch.bfloat16).float().numpy())
