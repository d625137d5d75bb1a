"""Conformance of the CNN ops, forward and backward, on shapes that do not divide tiles:
convolution (strides, padding, dilation, groups, 1-d/3-d, transposed), max / average / adaptive
average pooling, batch norm (training with its running statistics, and eval), constant padding.
All within 1e-5 relative (normwise, see harness.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from harness import GENERATOR, check

from compiler.driver import compile_in_memory
from compiler.frontend import ModelSpec, UnsupportedOpError
from compiler.targets import get_target
from runtime.session import InferenceSession, TrainingSession

F = torch.nn.functional


def rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=GENERATOR)


# -- convolution ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x,w,kw",
    [
        ((2, 3, 7, 6), (4, 3, 3, 3), dict(padding=1)),
        ((2, 3, 9, 8), (5, 3, 3, 2), dict(stride=2, padding=2, dilation=2)),
        ((3, 4, 9, 7), (6, 2, 3, 3), dict(stride=(2, 1), padding=1, groups=2)),
        ((2, 5, 9, 9), (7, 5, 1, 1), dict(stride=2)),  # ResNet's 1x1 shortcut
        ((2, 3, 5, 5), (4, 3, 1, 1), dict(padding=1)),  # padding past the kernel's reach
    ],
)
def test_conv2d(x: tuple, w: tuple, kw: dict) -> None:
    check(lambda a, b, bias: F.conv2d(a, b, bias, **kw), rand(*x), rand(*w), rand(w[0]))


def test_conv1d_and_conv3d() -> None:
    check(lambda a, b: F.conv1d(a, b, padding=2, stride=3), rand(2, 3, 11), rand(5, 3, 4))
    check(lambda a, b: F.conv3d(a, b, padding=1), rand(1, 2, 4, 5, 3), rand(3, 2, 3, 3, 2))


@pytest.mark.parametrize(
    "x,w,kw",
    [
        ((2, 3, 5, 5), (3, 4, 3, 3), dict(stride=2)),
        ((2, 3, 4, 5), (3, 2, 3, 2), dict(stride=2, padding=1, output_padding=1, groups=3)),
    ],
)
def test_conv_transpose2d(x: tuple, w: tuple, kw: dict) -> None:
    check(lambda a, b: F.conv_transpose2d(a, b, **kw), rand(*x), rand(*w))


# -- pooling -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,kw",
    [
        ((2, 3, 7, 6), dict(kernel_size=2)),
        ((2, 3, 7, 9), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
        ((1, 2, 9, 8), dict(kernel_size=(3, 2), stride=1, dilation=2)),
        ((3, 7, 6), dict(kernel_size=2, stride=1)),  # unbatched, overlapping windows
    ],
)
def test_max_pool2d(shape: tuple, kw: dict) -> None:
    check(lambda x: F.max_pool2d(x, **kw), rand(*shape))


def test_max_pool_ties_go_to_the_first_maximum() -> None:
    x = torch.zeros(2, 2, 6, 6)
    x[0, 0, 1:4, 1:4] = 1.0  # a plateau: overlapping windows see ties
    x[1, 1] = rand(6, 6).round()
    check(lambda t: F.max_pool2d(t, 3, 1, padding=1), x)
    check(lambda t: F.max_pool2d(t, 2), x)


def test_max_pool_indices_match_torch() -> None:
    x = rand(2, 3, 7, 6).round()
    check(lambda t: F.max_pool2d(t, 3, 2, padding=1, return_indices=True)[1], x, backward=False)


def test_max_pool_1d_and_3d() -> None:
    check(lambda x: F.max_pool1d(x, 3, 2), rand(2, 3, 9))
    check(lambda x: F.max_pool3d(x, 2), rand(1, 2, 5, 4, 5))


@pytest.mark.parametrize(
    "shape,kw",
    [
        ((2, 3, 7, 6), dict(kernel_size=2)),
        ((2, 3, 7, 9), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
        ((2, 3, 7, 9), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
        ((1, 2, 8, 7), dict(kernel_size=(2, 3), stride=(3, 1), divisor_override=5)),
    ],
)
def test_avg_pool2d(shape: tuple, kw: dict) -> None:
    check(lambda x: F.avg_pool2d(x, **kw), rand(*shape))


@pytest.mark.parametrize(
    "shape,kw",
    [
        ((2, 3, 5, 4), dict(kernel_size=9, stride=2, padding=3, ceil_mode=True)),
        ((2, 3, 5, 4), dict(kernel_size=9, stride=2, padding=3, count_include_pad=False)),
        ((2, 3, 2, 3), dict(kernel_size=(7, 2), stride=1, padding=(3, 1), ceil_mode=True)),
    ],
)
def test_pooling_kernels_reaching_past_the_padded_input(shape: tuple, kw: dict) -> None:
    check(lambda x: F.avg_pool2d(x, **kw), rand(*shape))
    kw = {k: v for k, v in kw.items() if k != "count_include_pad"}
    check(lambda x: F.max_pool2d(x, **kw), rand(*shape))


def test_efficientnets_pooler_reads_the_map_not_its_kernel() -> None:
    """``AvgPool2d(hidden_dim, ceil_mode=True)`` over a 2x3 map: a window of 128x128 positions
    of which 6 read the map. The windows and the gradient's spread are over those 6 (they were
    over 128x128 with the rest read from padding: 260 GiB at EfficientNet's sizes)."""
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.AvgPool2d(128, ceil_mode=True))
    x, weight = rand(2, 3, 2, 3), rand(2, 4, 1, 1)
    state = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
    program = compile_in_memory(
        _spec(module, x, weight), inference=False, target=get_target("sn10")
    )
    largest = max(math.prod(p.shape) for s in program.sections for p in s.pmus)
    assert largest < 1000, largest  # the windows [2, 4, 1, 1, 128, 128] alone are 131,072
    result = TrainingSession(program, state).step(
        {"input.0": x.numpy(), "target.0": weight.numpy()}, {}
    )
    out = module(x)
    (out * weight).sum().backward()
    _close(result.outputs["output.0"], out)
    _close(result.gradients["0.weight.grad"], module[0].weight.grad)


def test_avg_pool1d() -> None:
    check(lambda x: F.avg_pool1d(x, 3, 2, padding=1), rand(2, 3, 9))


@pytest.mark.parametrize(
    "shape,out",
    [((2, 3, 7, 6), (3, 4)), ((2, 3, 5, 5), (7, 3)), ((2, 3, 9, 8), (1, 1)), ((2, 4, 6, 6), 3)],
)
def test_adaptive_avg_pool2d(shape: tuple, out: tuple | int) -> None:
    check(lambda x: F.adaptive_avg_pool2d(x, out), rand(*shape))


def test_adaptive_avg_pool1d() -> None:
    check(lambda x: F.adaptive_avg_pool1d(x, 4), rand(2, 3, 9))


# -- padding -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,pad,value",
    [
        ((2, 3, 7, 6), (1, 2, 0, 3), 0.0),
        ((2, 3, 7, 6), (1, 2, -1, 3), 0.5),  # a negative pad crops
        ((5, 4, 3), (-1, -1, 2, 0, 1, 1), -2.0),
    ],
)
def test_constant_pad(shape: tuple, pad: tuple, value: float) -> None:
    check(lambda x: F.pad(x, pad, value=value), rand(*shape))


# -- batch norm ----------------------------------------------------------------------------------


def test_batch_norm_training_math() -> None:
    check(
        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
        rand(4, 3, 5, 7),
        rand(3),
        rand(3),
    )


class _ConvBn(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(5, momentum=0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


def _spec(module: torch.nn.Module, x: torch.Tensor, weight: torch.Tensor) -> ModelSpec:
    return ModelSpec(
        name="convbn",
        module=module,
        example_inputs=(x,),
        example_targets=(weight,),
        loss_fn=lambda out, w: (out * w).sum(),
        optimizer=None,
        source_file=Path(__file__),
    )


def _close(fabric: np.ndarray, reference: torch.Tensor, rtol: float = 1e-5) -> None:
    expected = reference.detach().numpy()
    scale = max(float(np.abs(expected).max()), 1e-30)
    assert float(np.abs(fabric - expected).max()) / scale <= rtol


def test_batch_norm_running_statistics_are_forward_outputs() -> None:
    torch.manual_seed(0)
    module = _ConvBn()
    x, weight = rand(4, 3, 7, 6), rand(4, 5, 7, 6)
    state = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
    program = compile_in_memory(
        _spec(module, x, weight), inference=False, target=get_target("sn10")
    )
    forward = [s for s in program.sections if s.kind == "forward"]
    written = {program.meta.symbols[o.symbol].name for s in forward for o in s.outputs}
    assert {"bn.running_mean", "bn.running_var", "bn.num_batches_tracked"} <= written
    session = TrainingSession(program, state)
    for _ in range(2):
        result = session.step({"input.0": x.numpy(), "target.0": weight.numpy()}, {})
        module.zero_grad()
        out = module(x)
        (out * weight).sum().backward()
    _close(result.outputs["output.0"], out)
    for name, param in module.named_parameters():
        _close(result.gradients[f"{name}.grad"], param.grad)
    after = session.state()
    for name in ("bn.running_mean", "bn.running_var"):
        _close(after[name], module.state_dict()[name])
    assert int(after["bn.num_batches_tracked"]) == 2


def test_batch_norm_eval_uses_running_statistics() -> None:
    torch.manual_seed(0)
    module = _ConvBn()
    with torch.no_grad():
        module.bn.running_mean.copy_(rand(5))
        module.bn.running_var.copy_(rand(5).abs() + 0.5)
    x = rand(3, 3, 7, 6)
    state = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
    spec = _spec(module, x, x)
    program = compile_in_memory(spec, inference=True, target=get_target("sn10"))
    out = InferenceSession(program, state).run({"input.0": x.numpy()})["output.0"]
    module.eval()
    _close(out, module(x))


# -- refusals ------------------------------------------------------------------------------------


def test_unsupported_form_names_the_op_and_line() -> None:
    with pytest.raises(UnsupportedOpError) as error:
        check(lambda x, g: F.grid_sample(x, g, align_corners=False), rand(1, 2, 4, 4),
              rand(1, 3, 3, 2))  # fmt: skip
    message = str(error.value)
    assert "aten." in message and "harness.py:" in message and "\n" not in message
