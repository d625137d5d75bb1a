"""Does the model fit the target's off-chip memory at all? Checked before anything is lowered.

A model can be larger than the fabric (it is cut into sections that run one after another), but
every tensor that crosses sections lives whole in off-chip memory (DRAM): a single tensor larger
than the target's ``dram_bytes`` can never run. The parameters, buffers and example batch are
checked before tracing (so a huge model fails in a second, not after a long trace), and every
DRAM symbol of the traced sections (activations, gradients, optimizer state) after it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from xdsl.dialects.builtin import ModuleOp, TensorType

from compiler.targets import Target, TargetError
from dialects.dataflow import SectionOp


class CapacityError(TargetError):
    """A tensor larger than the target's off-chip memory (one line naming the tensor)."""


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _check(target: Target, where: str, tensors: Iterable[tuple[str, list[int], str, int]]) -> None:
    if target.dram_bytes <= 0:  # not modelled (a target file without the figure)
        return
    for name, shape, dtype, nbytes in tensors:
        if nbytes > target.dram_bytes:
            raise CapacityError(
                f"{where}: tensor '{name}' {list(shape)} {dtype} is {nbytes} bytes "
                f"({_mib(nbytes)}), more than the {_mib(target.dram_bytes)} of off-chip memory "
                f"of target '{target.name}'"
            )


def check_model_fits(
    target: Target,
    source: Path | str,
    module: torch.nn.Module,
    batch: Iterable[tuple[str, torch.Tensor]],
) -> None:
    """Every parameter, buffer and example tensor fits the target's off-chip memory."""

    def tensors() -> Iterable[tuple[str, list[int], str, int]]:
        named = list(module.state_dict().items()) + list(batch)
        for name, tensor in named:
            nbytes = tensor.numel() * tensor.element_size()
            yield name, list(tensor.shape), str(tensor.dtype).removeprefix("torch."), nbytes

    _check(target, str(source), tensors())


def check_batch_fits(
    target: Target, source: Path | str, batch: Iterable[tuple[str, torch.Tensor]]
) -> None:
    """Every example tensor fits the target's off-chip memory (``batch`` may be meta tensors:
    shapes without memory)."""
    check_model_fits(target, source, torch.nn.Module(), batch)


def check_sections_fit(target: Target, source: Path | str, module: ModuleOp) -> None:
    """Every DRAM symbol the dataflow sections read or write fits the off-chip memory."""

    def tensors() -> Iterable[tuple[str, list[int], str, int]]:
        for section in module.walk():
            if not isinstance(section, SectionOp):
                continue
            names = [a.data for a in section.arg_names.data]
            values = list(section.body.block.args)
            terminator = section.body.block.last_op
            if terminator is not None:
                names += [a.data for a in section.result_names.data]
                values += list(terminator.operands)
            for name, value in zip(names, values, strict=False):
                typ = value.type
                if not isinstance(typ, TensorType):
                    continue
                shape = [int(d) for d in typ.get_shape()]
                width = typ.element_type.bitwidth if hasattr(typ.element_type, "bitwidth") else 32
                nbytes = max(1, (width + 7) // 8) * _numel(shape)
                yield name, shape, str(typ.element_type), nbytes

    _check(target, str(source), tensors())


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
