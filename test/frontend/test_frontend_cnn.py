"""The frontend's CNN ops, checked at the dataflow level (numpy interpreter, no lowering): the
IR of a convolution, the poolings and a padding computes torch's numbers, and it stays the same
size when the images or the batch grow (loops stay loops)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from dataflow_interp import run_section

from compiler.frontend import ModelSpec, build_dataflow
from dialects.dataflow import AsStridedOp, PadOp, SectionOp

F = torch.nn.functional


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.max_pool2d(torch.relu(self.conv(F.pad(x, (1, 0, 2, 1), value=0.5))), 2, 1)
        return F.avg_pool2d(y, 2, padding=1) + F.adaptive_avg_pool2d(y, (3, 2)).mean()


def _forward(n: int, size: int) -> tuple[SectionOp, _Net, torch.Tensor]:
    torch.manual_seed(0)
    net = _Net()
    x = torch.randn(n, 3, size, size + 1)
    spec = ModelSpec("cnn", net, (x,), (), None, None, Path(__file__))
    (section,) = build_dataflow(spec, inference=True).ops
    assert isinstance(section, SectionOp)
    return section, net, x


def test_dataflow_of_cnn_ops_computes_torch() -> None:
    section, net, x = _forward(2, 9)
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    out = run_section(section, {**state, "input.0": x.numpy()})["output.0"]
    np.testing.assert_allclose(out, net(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    kinds = {type(op) for op in section.body.block.ops}
    assert AsStridedOp in kinds and PadOp in kinds


def test_dataflow_size_does_not_grow_with_images_or_batch() -> None:
    small, _, _ = _forward(2, 9)
    large, _, _ = _forward(8, 33)
    assert len(list(small.body.block.ops)) == len(list(large.body.block.ops))
