"""rdu-compile builds the model without initialising its weights when nothing it writes reads
them (``tools.rdu_compile.build_model``), and as it is when something does: a non-persistent
buffer, a tensor held outside parameters and buffers, ``--weights model``, or a model() that
fails on the meta device. Each model here notes the device its ``model()`` ran on."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import torch

from tools.model_file import ModelFile, load_model_file
from tools.rdu_compile import build_model

ROOT = Path(__file__).resolve().parents[2]

MODEL = """
import torch
from torch import nn

DEVICES = []


class Net(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(3, 4)
        self.b.weight = nn.Parameter(torch.randn(4, 3))
        self.tied = nn.Linear(4, 3, bias=False)
        self.tied.weight = self.a.weight  # one parameter under two names
        self.register_buffer("mean", torch.rand(3))
        self.frozen = nn.Parameter(torch.rand(2), requires_grad=False)
        if kind == "non-persistent":
            self.register_buffer("scale", torch.rand(3), persistent=False)
        if kind == "attribute":
            self.table = [torch.rand(3)]
        if kind == "item":
            self.factor = float(torch.rand(()).item())


def model(args):
    DEVICES.append(torch.empty(()).device.type)
    return Net(args.kind)
"""


def _load(tmp_path: Path) -> ModelFile:
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    return load_model_file(str(path))


def _build(tmp_path: Path, kind: str, values: bool) -> tuple[Any, list[str]]:
    model_file = _load(tmp_path)
    torch.manual_seed(0)
    module = build_model(model_file, argparse.Namespace(kind=kind), values=values)
    return module, model_file.module.DEVICES


def _as_built(tmp_path: Path, kind: str) -> Any:
    """model() as it is, at seed 0."""
    model_file = _load(tmp_path)
    torch.manual_seed(0)
    return model_file.call("model", argparse.Namespace(kind=kind))


def _assert_same_state(module: torch.nn.Module, real: torch.nn.Module) -> None:
    got, want = module.state_dict(), real.state_dict()
    assert list(got) == list(want)
    for name, tensor in got.items():
        assert torch.equal(tensor, want[name]), name


def test_weights_nothing_reads_are_not_initialised(tmp_path: Path) -> None:
    module, devices = _build(tmp_path, "plain", values=False)
    assert devices == ["meta"]
    real = _as_built(tmp_path, "plain")
    got = {
        n: (p.device.type, p.shape, p.dtype, p.requires_grad) for n, p in module.named_parameters()
    }
    want = {n: ("cpu", p.shape, p.dtype, p.requires_grad) for n, p in real.named_parameters()}
    assert got == want
    assert {n: b.shape for n, b in module.named_buffers()} == {"mean": torch.Size([3])}
    assert module.tied.weight is module.a.weight
    assert list(module.state_dict()) == list(real.state_dict())


@pytest.mark.parametrize("kind", ["non-persistent", "attribute", "item"])
def test_a_model_whose_values_are_read_is_built_as_it_is(tmp_path: Path, kind: str) -> None:
    module, devices = _build(tmp_path, kind, values=False)
    assert devices == ["meta", "cpu"]  # tried on the meta device, then built as it is
    real = _as_built(tmp_path, kind)  # the same random state: the same values
    _assert_same_state(module, real)
    if kind == "non-persistent":
        assert torch.equal(module.scale, real.scale)
    if kind == "attribute":
        assert torch.equal(module.table[0], real.table[0])


def test_values_asked_for_build_it_as_it_is(tmp_path: Path) -> None:
    module, devices = _build(tmp_path, "plain", values=True)
    assert devices == ["cpu"]
    real = _as_built(tmp_path, "plain")
    _assert_same_state(module, real)


@pytest.mark.parametrize("zoo", ["gpt2"])  # tied weights; every zoo model was checked once
def test_the_pef_is_the_one_the_initialised_model_gives(zoo: str) -> None:
    """The same PEF, byte for byte, from the model built without its init (a zoo model
    that takes the meta path) as from the model built as it is."""
    from compiler.driver import compile_in_memory
    from compiler.targets import get_target
    from runtime.pef import encode_pef
    from tools.rdu_compile import compile_flags, model_spec

    target, extra = get_target("plasticine"), ["--zoo", zoo]
    pefs = []
    for values in (False, True):
        with torch.random.fork_rng():
            model_file, spec = model_spec(
                str(ROOT / "examples/zoo/model.py"), extra, False, 2, 0, False, target,
                values=values,
            )  # fmt: skip
            program = compile_in_memory(
                spec,
                inference=False,
                target=target,
                flags=compile_flags("plasticine", 2, False, False, 1, extra),
                source_hash=model_file.source_hash(),
                batch_size=2,
            )
        pefs.append(encode_pef(program))
    assert pefs[0] == pefs[1]
