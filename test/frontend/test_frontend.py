"""The frontend: sections, names, roles, locations, errors, and numerics against torch."""

from __future__ import annotations

import argparse
import copy
import importlib.util
import inspect
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from dataflow_interp import run_section
from xdsl.context import Context
from xdsl.dialects.builtin import Builtin, FileLineColLoc, ModuleOp
from xdsl.parser import Parser
from xdsl.printer import Printer

from compiler.frontend import FrontendError, ModelSpec, UnsupportedOpError, build_dataflow
from compiler.frontend.optimizer import hyperparameter_values, plan_optimizer
from compiler.frontend.trace import param_symbols
from compiler.value_names import source_location, value_name
from dialects.dataflow import Dataflow, SectionOp
from tools.tolerance import compare, float_error

ROOT = Path(__file__).resolve().parents[2]
MLP_FILE = ROOT / "examples" / "mlp" / "model.py"
BATCH = 16


def load_model_py(path: Path) -> types.ModuleType:
    """Import a model.py under a unique module name."""
    name = f"_frontend_test_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def mlp_spec(optimizer: str = "model") -> ModelSpec:
    """The MLP example as the tools hand it over (seeded weights, random batch)."""
    m = load_model_py(MLP_FILE)
    args = argparse.Namespace(hidden=128, classes=10, batch_size=BATCH, seed=0, epoch=0)
    torch.manual_seed(0)
    model = m.model(args)
    x = torch.randn(BATCH, 64)
    y = torch.randint(0, 10, (BATCH,))
    if optimizer == "model":
        opt = m.optimizer(model.parameters(), args)
    elif optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
    else:
        opt = None
    return ModelSpec("mlp", model, (x,), (y,), m.loss, opt, MLP_FILE)


def sections(module: ModuleOp) -> dict[str, SectionOp]:
    out = {}
    for op in module.ops:
        assert isinstance(op, SectionOp)
        out[op.sym_name.data] = op
    return out


def names(attr: object) -> list[str]:
    return [a.data for a in attr]  # type: ignore[attr-defined]


def source_line(text: str) -> int:
    """The 1-based line of the MLP model.py holding ``text``."""
    for i, line in enumerate(MLP_FILE.read_text().splitlines(), start=1):
        if text in line:
            return i
    raise AssertionError(text)


@pytest.fixture(scope="module")
def training() -> tuple[ModelSpec, ModuleOp]:
    spec = mlp_spec()
    return spec, build_dataflow(spec, inference=False)


PARAMS = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


def test_training_sections_names_and_roles(training: tuple[ModelSpec, ModuleOp]) -> None:
    _, module = training
    s = sections(module)
    assert list(s) == ["forward", "backward", "optimizer"]
    assert [op.kind.data for op in s.values()] == ["forward", "backward", "optimizer"]

    fwd = s["forward"]
    assert names(fwd.arg_names) == [*PARAMS, "input.0", "target.0"]
    assert names(fwd.arg_roles) == ["parameter"] * 4 + ["input", "label"]
    results = names(fwd.result_names)
    assert results[:2] == ["loss", "output.0"]
    assert all(r.startswith("saved.") for r in results[2:])
    assert "saved.relu" in results
    assert names(fwd.result_roles) == ["loss", "output"] + ["activation"] * (len(results) - 2)

    bwd = s["backward"]
    saved = [n for n in names(bwd.arg_names) if n.startswith("saved.")]
    assert saved == results[2:]
    assert set(names(bwd.arg_names)) - set(saved) <= {*PARAMS, "input.0", "target.0"}
    assert names(bwd.result_names) == [f"{p}.grad" for p in PARAMS]
    assert names(bwd.result_roles) == ["gradient"] * 4

    opt = s["optimizer"]
    assert names(opt.arg_names) == [
        *PARAMS,
        *(f"{p}.grad" for p in PARAMS),
        *(f"{p}.momentum_buffer" for p in PARAMS),
        "lr",
        "momentum",
        "weight_decay",
    ]
    assert (
        names(opt.arg_roles)
        == ["parameter"] * 4 + ["gradient"] * 4 + ["optimizer_state"] * 4 + ["hyperparameter"] * 3
    )
    assert names(opt.result_names) == [*PARAMS, *(f"{p}.momentum_buffer" for p in PARAMS)]
    for arg, name in zip(opt.body.block.args, names(opt.arg_names), strict=True):
        if name in ("lr", "momentum", "weight_decay"):
            assert str(arg.type) == "tensor<f32>"


def test_inference_section() -> None:
    spec = mlp_spec(optimizer="none")
    module = build_dataflow(spec, inference=True)
    s = sections(module)
    assert list(s) == ["forward"]
    fwd = s["forward"]
    assert names(fwd.arg_names) == [*PARAMS, "input.0"]
    assert names(fwd.result_names) == ["output.0"]
    assert names(fwd.result_roles) == ["output"]
    params = {k: v.detach().numpy() for k, v in spec.module.state_dict().items()}
    x = spec.example_inputs[0]
    out = run_section(fwd, {**params, "input.0": x.numpy()})["output.0"]
    expected = spec.module.eval()(x).detach().numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_printed_ir_parses_back(training: tuple[ModelSpec, ModuleOp]) -> None:
    _, module = training
    ctx = Context()
    ctx.load_dialect(Builtin)
    ctx.load_dialect(Dataflow)
    text = str(module)
    reparsed = Parser(ctx, text).parse_module()
    reparsed.verify()
    assert str(reparsed) == text


def test_every_op_points_at_the_model(training: tuple[ModelSpec, ModuleOp]) -> None:
    _, module = training
    forward_line = source_line("return self.fc2(self.act(self.fc1(x)))")
    loss_line = source_line("cross_entropy")
    optim_line = source_line("torch.optim.SGD")
    expected = {
        "forward": {forward_line, loss_line},
        "backward": {forward_line, loss_line},
        "optimizer": {optim_line},
    }
    for name, section in sections(module).items():
        lines = set()
        for op in section.body.block.ops:
            loc = source_location(op.location)
            assert isinstance(loc, FileLineColLoc), op
            assert loc.filename.data == "model.py"
            lines.add(loc.line.data)
        assert lines <= expected[name] | {source_line("def forward")}, (name, lines)
    # the printed form carries them as loc("model.py":LINE:0); the op computing an FX node's
    # value names the node around it (the matmul of fc1's addmm does not: its add does)
    text = _print_with_locations(module)
    assert f'loc("model.py":{forward_line}:0)' in text
    assert f'loc("relu"("model.py":{forward_line}:0))' in text
    forward_values = {value_name(op.location) for op in sections(module)["forward"].body.ops}
    assert {"addmm", "relu", "addmm_1"} <= forward_values


def _print_with_locations(module: ModuleOp) -> str:
    import io

    stream = io.StringIO()
    Printer(stream=stream, print_debuginfo=True).print_op(module)
    return stream.getvalue()


def _to_np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().copy()


def _close(actual: np.ndarray, expected: np.ndarray, what: str, rtol: float = 1e-5) -> None:
    """Relative error against the reference's scale."""
    scale = max(float(np.abs(expected).max()), 1e-12)
    err = float(np.abs(actual.astype(np.float64) - expected.astype(np.float64)).max())
    assert err <= rtol * scale, f"{what}: max error {err} vs scale {scale}"


def _torch_step(spec: ModelSpec) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Loss, logits and gradients from torch, then one optimizer step (in place)."""
    model = spec.module.train()
    model.zero_grad()
    out = model(*spec.example_inputs)
    loss = spec.loss_fn(out, *spec.example_targets)  # type: ignore[misc]
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}  # type: ignore[union-attr]
    assert spec.optimizer is not None
    spec.optimizer.step()
    return loss.detach(), out.detach(), grads


@pytest.mark.parametrize("optimizer", ["model", "adamw"])
def test_numerics_match_torch(optimizer: str) -> None:
    spec = mlp_spec(optimizer)
    module = build_dataflow(spec, inference=False)
    s = sections(module)
    params = {k: _to_np(v) for k, v in spec.module.state_dict().items()}
    state: dict[str, np.ndarray] = {
        **params,
        "input.0": spec.example_inputs[0].numpy(),
        "target.0": spec.example_targets[0].numpy(),
    }
    # optimizer state before the first step, hyperparameters for step 1
    symbols = param_symbols(spec.module)
    plan = plan_optimizer(spec.optimizer, symbols, PARAMS)  # type: ignore[arg-type]
    for p in PARAMS:
        for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
            state[f"{p}.{key}"] = np.zeros_like(params[p])
    for k, v in hyperparameter_values(plan, step=1).items():
        state[k] = np.asarray(v, dtype=np.float32)

    state.update(run_section(s["forward"], state))
    state.update(run_section(s["backward"], state))
    updated = run_section(s["optimizer"], state)

    wide = _torch64_updates(spec)
    loss, logits, grads = _torch_step(spec)
    _close(state["loss"], loss.numpy(), "loss")
    _close(state["output.0"], logits.numpy(), "logits")
    for p in PARAMS:
        _close(state[f"{p}.grad"], grads[p].numpy(), f"{p}.grad")
    new_params = dict(spec.module.named_parameters())
    for p in PARAMS:
        # rdu-test's rule for a parameter after its update (tools/tolerance.py): the relative
        # part of the update, the absolute part of the parameter, plus torch's own float32
        # error. AdamW divides by sqrt(v) + eps: a gradient element that cancels to about eps
        # moves its weight by lr times noise of its sum's order, in torch as here.
        expected = _to_np(new_params[p])
        row = compare(
            f"updated {p}", updated[p], expected, scale=float(np.abs(params[p]).max()),
            relative_to=expected - params[p], torch_error=float_error(expected, wide[p]),
        )  # fmt: skip
        assert row.ok, (row.name, row.max_abs, row.limit, row.torch_term)


def _torch64_updates(spec: ModelSpec) -> dict[str, np.ndarray]:
    """The parameters after torch's step run in float64 on a copy (torch's own float32 error
    is its distance from these)."""
    model = copy.deepcopy(spec.module).double().train()
    assert spec.optimizer is not None
    kind = type(spec.optimizer)
    accepted = inspect.signature(kind).parameters
    options = {k: v for k, v in spec.optimizer.defaults.items() if k in accepted}
    optimizer = kind(model.parameters(), **options)
    inputs = [t.double() if t.is_floating_point() else t for t in spec.example_inputs]
    loss = spec.loss_fn(model(*inputs), *spec.example_targets)  # type: ignore[misc]
    loss.backward()
    optimizer.step()
    return {n: _to_np(v) for n, v in model.named_parameters()}


def _write_model(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(body))
    return path


def _spec_from(path: Path, inputs: tuple[torch.Tensor, ...], targets: tuple[torch.Tensor, ...]):
    m = load_model_py(path)
    model = m.Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return ModelSpec("net", model, inputs, targets, getattr(m, "loss", None), opt, path)


def _line_of(path: Path, text: str) -> int:
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return i
    raise AssertionError(text)


BESSEL_MODEL = """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.fc(x)
            return torch.special.bessel_j0(h)


    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((out - target) ** 2).mean()
"""


TWO_LINE_MODEL = """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(8, 16)
            self.fc2 = nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.tanh(self.fc1(x))
            return self.fc2(h) * h.sum(dim=1, keepdim=True)


    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((out - target) ** 2).mean()
"""


def test_backward_ops_point_at_the_lines_they_differentiate(tmp_path: Path) -> None:
    """Each backward op is located at the forward line it is the gradient of (the joint trace
    records stack traces on forward nodes; backward nodes take their forward node's); ``h``,
    used twice, has its two gradients added at one of its uses."""
    path = _write_model(tmp_path, TWO_LINE_MODEL)
    spec = _spec_from(path, (torch.randn(4, 8),), (torch.randn(4, 4),))
    module = build_dataflow(spec, inference=False)
    first, second = _line_of(path, "torch.tanh"), _line_of(path, "self.fc2(h)")
    lines = {"forward": {}, "backward": {}}  # op name -> lines
    for name in ("forward", "backward"):
        for op in sections(module)[name].body.block.ops:
            loc = source_location(op.location)
            assert isinstance(loc, FileLineColLoc), op
            lines[name].setdefault(op.name, set()).add(loc.line.data)
    assert lines["forward"]["dataflow.matmul"] == {first, second}
    assert lines["backward"]["dataflow.matmul"] == {first, second}  # dW1, dW2, dh
    tanh_grad = [  # d tanh = (1 - y^2) dy: its "mul"/"sub" ops sit on the tanh line
        source_location(op.location).line.data  # type: ignore[attr-defined]
        for op in sections(module)["backward"].body.block.ops
        if op.name == "dataflow.pointwise" and "tanh" in str(op.operands)
    ]
    assert set(tanh_grad) <= {first}
    backward_lines = set().union(*lines["backward"].values())
    assert {first, second} <= backward_lines <= {first, second, _line_of(path, "return ((")}


@pytest.mark.parametrize("inference", [True, False])
def test_unsupported_op_names_op_and_line(tmp_path: Path, inference: bool) -> None:
    path = _write_model(tmp_path, BESSEL_MODEL)
    spec = _spec_from(path, (torch.randn(4, 8),), (torch.randn(4, 8),))
    with pytest.raises(UnsupportedOpError) as info:
        build_dataflow(spec, inference=inference)
    line = _line_of(path, "torch.special.bessel_j0")
    message = str(info.value)
    refused = f"model.py:{line}: unsupported op aten.special_bessel_j0.default"
    assert message.startswith(refused), message
    assert "\n" not in message


RESCALING_MODEL = """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)
            self.rescaled = False

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training and not self.rescaled:  # RWKV's, at its first eval call
                with torch.no_grad():
                    self.fc.weight.div_(2)  # RESCALE
                self.rescaled = True
            return self.fc(x)


    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((out - target) ** 2).mean()
"""


def test_a_forward_writing_a_parameter_in_eval_mode_is_refused_at_its_line(
    tmp_path: Path,
) -> None:
    """RWKV rescales its weights in place the first time it runs in eval mode: an inference
    graph that writes a parameter is refused in one line at the model's line, not supported
    yet (training, which does not, compiles)."""
    path = _write_model(tmp_path, RESCALING_MODEL)
    spec = _spec_from(path, (torch.randn(4, 8),), (torch.randn(4, 8),))
    with pytest.raises(FrontendError) as info:
        build_dataflow(spec, inference=True)
    message = str(info.value)
    assert message.startswith(f"model.py:{_line_of(path, '# RESCALE')}: "), message
    assert "parameter 'fc.weight' in place" in message and "not supported yet" in message
    assert "\n" not in message
    build_dataflow(_spec_from(path, (torch.randn(4, 8),), (torch.randn(4, 8),)), inference=False)


BRANCHING_MODEL = """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if torch.rand([]) < 0.5:  # a LayerDrop: Python control flow on a random value
                x = self.fc(x)
            return x


    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((out - target) ** 2).mean()
"""


def test_tracing_failure_names_the_line(tmp_path: Path) -> None:
    """A model torch cannot trace (control flow on a tensor's value, as Wav2Vec2's LayerDrop)
    fails in one line naming the line of the model that made it fail."""
    path = _write_model(tmp_path, BRANCHING_MODEL)
    spec = _spec_from(path, (torch.randn(4, 8),), (torch.randn(4, 8),))
    with pytest.raises(FrontendError) as info:
        build_dataflow(spec, inference=False)
    line = _line_of(path, "if torch.rand")
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: tracing the training step failed: "), message
    assert "\n" not in message


LAYERDROP_LIBRARY = """
    import torch


    def maybe_skip(layer, x):
        if torch.rand([]) < 0.5:  # LayerDrop, as transformers' encoders
            return x
        return layer(x)
"""

LIBRARY_BRANCHING_MODEL = """
    import importlib.util
    from pathlib import Path

    import torch
    from torch import nn

    _file = Path(__file__).parent / "layerdrop_lib.py"
    _spec = importlib.util.spec_from_file_location("layerdrop_lib", _file)
    lib = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(lib)


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return lib.maybe_skip(self.fc, x)


    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((out - target) ** 2).mean()
"""


def test_tracing_failure_in_a_library_names_its_line(tmp_path: Path) -> None:
    """When the decision is a library's (M2M100's, HuBERT's LayerDrop), the one line names the
    model's line and, after "failed at", the library's line, its function and its code."""
    (tmp_path / "layerdrop_lib.py").write_text(textwrap.dedent(LAYERDROP_LIBRARY))
    path = _write_model(tmp_path, LIBRARY_BRANCHING_MODEL)
    spec = _spec_from(path, (torch.randn(4, 8),), (torch.randn(4, 8),))
    with pytest.raises(FrontendError) as info:
        build_dataflow(spec, inference=False)
    line = _line_of(path, "return lib.maybe_skip")
    at = _line_of(tmp_path / "layerdrop_lib.py", "if torch.rand")
    message = str(info.value)
    assert message.startswith(
        f"{path}:{line}: tracing the training step failed at layerdrop_lib.py:{at} in "
        "maybe_skip (`if torch.rand([]) < 0.5:  # LayerDrop, as transformers' encoders`): the "
        "model decides on a tensor's value in Python"
    ), message
    assert "\n" not in message


MASKED_WRITE_MODEL = """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)
            self.embed = nn.Parameter(torch.randn(8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.fc(x)
            mask = torch.tensor([True, False, True, False])
            x[mask] = self.embed  # SpecAugment's write (HuBERT, wav2vec2)
            return x


    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((out - target) ** 2).mean()
"""


def test_tracing_failure_in_a_gradient_names_the_forward_line(tmp_path: Path) -> None:
    """A boolean-mask write traces; its gradient (the mask's selection, ``nonzero``) does not:
    the one line names the forward line the gradient is of (autograd's frames are torch's)."""
    path = _write_model(tmp_path, MASKED_WRITE_MODEL)
    spec = _spec_from(path, (torch.randn(4, 8),), (torch.randn(4, 8),))
    with pytest.raises(FrontendError) as info:
        build_dataflow(spec, inference=False)
    line = _line_of(path, "x[mask] = self.embed")
    message = str(info.value)
    assert message.startswith(
        f"{path}:{line}: tracing the training step failed in the gradient of this line: "
        "aten.nonzero.default makes a tensor whose shape depends on its values"
    ), message
    assert "\n" not in message


LINEAR_MODEL = """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x).relu()
"""


def test_failure_decomposing_the_export_names_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An op that fails while the exported program is decomposed (WavLM's ``repeat`` did,
    then its ``view``) names the model's line, which torch gives only in its message."""
    from compiler.frontend import trace

    def failing(*args: object, **kwargs: object) -> torch.Tensor:
        raise ValueError("cannot view it")

    table = trace.inference_table
    monkeypatch.setattr(
        trace, "inference_table", lambda: {**table(), torch.ops.aten.relu.default: failing}
    )
    path = _write_model(tmp_path, LINEAR_MODEL)
    spec = _spec_from(path, (torch.randn(4, 8),), (torch.randn(4, 8),))
    with pytest.raises(FrontendError) as info:
        build_dataflow(spec, inference=True)
    line = _line_of(path, "return self.fc(x).relu()")
    message = str(info.value)
    assert message.startswith(
        f"{path}:{line}: exporting the model failed: ValueError: cannot view it"
    ), message
    assert "\n" not in message


def test_unsupported_backward_op_says_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    """An op only the backward uses is reported at the forward line it differentiates, and at
    the library line (torch's ``nn.ReLU``) whose call it is the gradient of."""
    from compiler.frontend import registry

    monkeypatch.delitem(registry.CONVERTERS, "aten.threshold_backward.default")
    spec = mlp_spec()
    build_dataflow(spec, inference=True)  # the forward alone does not need it
    with pytest.raises(UnsupportedOpError) as info:
        build_dataflow(spec, inference=False)
    line = source_line("return self.fc2(self.act(self.fc1(x)))")
    assert str(info.value) == (
        f"model.py:{line}: unsupported op aten.threshold_backward.default "
        f"(gradient of activation.py:143 in ReLU.forward, from model.py:{line})"
    )


def test_unsupported_optimizer_setting() -> None:
    spec = mlp_spec(optimizer="none")
    spec.optimizer = torch.optim.SGD(spec.module.parameters(), lr=0.1, momentum=0.9, dampening=0.1)
    with pytest.raises(FrontendError, match="dampening != 0 is not supported yet"):
        build_dataflow(spec, inference=False)
    spec.optimizer = torch.optim.SGD(spec.module.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    with pytest.raises(FrontendError, match="nesterov=True is not supported yet"):
        build_dataflow(spec, inference=False)


class _Tied(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(8, 8)
        self.b = torch.nn.Linear(8, 8)
        self.b.weight = self.a.weight  # tied

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x)))


def test_tied_weights_are_one_symbol() -> None:
    torch.manual_seed(0)
    model = _Tied()
    x, y = torch.randn(4, 8), torch.randn(4, 8)

    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((out - target) ** 2).mean()

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    spec = ModelSpec("tied", model, (x,), (y,), loss, opt, Path(__file__))
    module = build_dataflow(spec, inference=False)
    s = sections(module)
    fwd_params = [
        n
        for n, r in zip(names(s["forward"].arg_names), names(s["forward"].arg_roles), strict=True)
        if r == "parameter"
    ]
    assert fwd_params == ["a.weight", "a.bias", "b.bias"]
    assert names(s["backward"].result_names) == ["a.weight.grad", "a.bias.grad", "b.bias.grad"]
    # gradient of the tied weight sums both uses
    state = {k: _to_np(v) for k, v in model.state_dict().items()}
    state.update({"input.0": x.numpy(), "target.0": y.numpy()})
    state.update(run_section(s["forward"], state))
    grads = run_section(s["backward"], state)
    ref = copy.deepcopy(model)
    loss(ref(x), y).backward()
    _close(grads["a.weight.grad"], ref.a.weight.grad.numpy(), "tied grad")  # type: ignore[union-attr]


def test_more_ops_match_torch() -> None:
    """A model with GELU, LayerNorm, softmax, mean, exp/log and where: numerics vs torch."""

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(6, 6)
            self.norm = torch.nn.LayerNorm(6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.norm(torch.nn.functional.gelu(self.fc(x)))
            p = torch.softmax(h, dim=-1)
            h = torch.where(h > 0, h * 2.0, torch.exp(h) - 1) + p.mean(dim=0, keepdim=True)
            return torch.sigmoid(h) + torch.tanh(h).unsqueeze(0).squeeze(0) / 3

    torch.manual_seed(1)
    model = Net()
    x, y = torch.randn(5, 6), torch.randn(5, 6)

    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.mse_loss(out, target)

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    spec = ModelSpec("more", model, (x,), (y,), loss, opt, Path(__file__))
    s = sections(build_dataflow(spec, inference=False))
    state = {k: _to_np(v) for k, v in model.state_dict().items()}
    state.update({"input.0": x.numpy(), "target.0": y.numpy()})
    state.update(run_section(s["forward"], state))
    state.update(run_section(s["backward"], state))
    ref = copy.deepcopy(model)
    out = ref(x)
    ref_loss = loss(out, y)
    ref_loss.backward()
    _close(state["loss"], ref_loss.detach().numpy(), "loss")
    _close(state["output.0"], out.detach().numpy(), "output")
    for n, p in ref.named_parameters():
        _close(state[f"{n}.grad"], p.grad.numpy(), f"{n}.grad", rtol=1e-4)  # type: ignore[union-attr]
