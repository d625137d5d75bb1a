"""The op conformance harness: one op (or a small function), compiled and run on the fabric,
forward and backward, compared with torch on the CPU.

``check(fn, *args)`` builds a module whose parameters are the float arguments (so the fabric
computes their gradients) and whose model inputs are the integer arguments, with the loss
``sum(fn(*args) * W)`` for a fixed random ``W`` (so every output element gets a distinct
gradient). It compiles a training program in memory, runs one forward + backward on the
emulated fabric and compares the output and every gradient with torch's, normwise:
``max|fabric - torch| / max|torch| <= rtol``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from compiler.driver import compile_in_memory
from compiler.frontend import ModelSpec
from compiler.targets import get_target
from runtime.session import InferenceSession, TrainingSession

GENERATOR = torch.Generator()
"""Where the tests' inputs come from: reseeded before every test (``conftest.py``), so a test's
inputs are the same whichever tests ran before it in the same process (``-n auto``, ``-k``)."""


class _OpModule(torch.nn.Module):
    """Float arguments as parameters (``arg0``, ``arg1``...), integer ones as model inputs."""

    def __init__(self, fn: Callable[..., torch.Tensor], args: tuple) -> None:
        super().__init__()
        self.fn = fn
        self.kinds: list[str] = []
        self.constants: dict[int, object] = {}
        for i, a in enumerate(args):
            if isinstance(a, torch.Tensor) and a.is_floating_point():
                self.register_parameter(f"arg{i}", torch.nn.Parameter(a.detach().clone()))
                self.kinds.append("param")
            elif isinstance(a, torch.Tensor):
                self.kinds.append("input")
            else:
                self.constants[i] = a
                self.kinds.append("const")

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        it = iter(inputs)
        args = []
        for i, kind in enumerate(self.kinds):
            if kind == "param":
                args.append(getattr(self, f"arg{i}"))
            elif kind == "input":
                args.append(next(it))
            else:
                args.append(self.constants[i])
        return self.fn(*args)


def _rel(fabric: np.ndarray, reference: np.ndarray) -> float:
    diff = np.abs(np.asarray(fabric, np.float64) - np.asarray(reference, np.float64))
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    worst = float(diff.max()) if diff.size else 0.0
    return worst / scale if scale > 0 else worst


def check(
    fn: Callable[..., torch.Tensor],
    *args: object,
    rtol: float = 1e-5,
    backward: bool = True,
    target: str = "plasticine",
) -> None:
    """Assert that ``fn(*args)`` and its gradients match torch on the fabric within ``rtol``."""
    torch.manual_seed(0)
    module = _OpModule(fn, args)
    inputs = tuple(a for a, k in zip(args, module.kinds, strict=True) if k == "input")
    with torch.no_grad():
        reference_out = module(*inputs)
    weight = torch.randn(reference_out.shape, generator=torch.Generator().manual_seed(1))
    spec = ModelSpec(
        name="op",
        module=module,
        example_inputs=inputs,
        example_targets=(weight,),
        loss_fn=lambda out, w: (out * w).sum(),
        optimizer=None,
        source_file=Path(__file__),
    )
    feed = {f"input.{i}": x.numpy() for i, x in enumerate(inputs)}
    state = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
    has_grad = backward and any(k == "param" for k in module.kinds)
    if not has_grad:
        program = compile_in_memory(spec, inference=True, target=get_target(target))
        fabric = InferenceSession(program, state).run(feed)["output.0"]
        assert _rel(fabric, reference_out.numpy()) <= rtol, (
            f"output: rel err {_rel(fabric, reference_out.numpy()):.3e} > {rtol}"
        )
        return
    program = compile_in_memory(spec, inference=False, target=get_target(target))
    result = TrainingSession(program, state).step({**feed, "target.0": weight.numpy()}, {})
    out = module(*inputs)
    (out * weight).sum().backward()
    err = _rel(result.outputs["output.0"], out.detach().numpy())
    assert err <= rtol, f"output: rel err {err:.3e} > {rtol}"
    for name, param in module.named_parameters():
        grad = result.gradients[f"{name}.grad"]
        err = _rel(grad, param.grad.numpy())
        assert err <= rtol, f"grad of {name}: rel err {err:.3e} > {rtol}"
