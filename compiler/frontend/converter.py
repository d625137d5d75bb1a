"""What an ATen converter is: the :class:`Call` it gets, the :data:`Result` it returns, the
:class:`ConversionError` it raises for a form it cannot convert, and the :class:`ConverterTable`
a family of converters registers into (``aten.py``, ``aten_cnn.py``, ...; the registry joins them).

This module imports no converter family, so every family imports it without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from xdsl.dialects.builtin import bf16, f32, i1, i64
from xdsl.ir import Attribute, SSAValue

from compiler.frontend.emitter import Emitter

Result = SSAValue | tuple[SSAValue | None, ...] | None
"""What a converter returns: one value, a tuple for multi-result ops, None for no result."""


class ConversionError(Exception):
    """A form of a supported op that the frontend cannot convert (the message says which)."""


_DTYPES: dict[torch.dtype, Attribute] = {
    torch.float32: f32,
    torch.bfloat16: bf16,
    torch.int64: i64,
    torch.int32: i64,  # where its values fit: compiler/frontend/int_bounds.py
    torch.bool: i1,
}


def elt_of_dtype(dtype: torch.dtype) -> Attribute:
    """The IR element type of a torch dtype (f32, bf16, i64, bool; int32 is computed as i64)."""
    if dtype not in _DTYPES:
        raise ConversionError(f"dtype {dtype} (supported: float32, bfloat16, int64, int32, bool)")
    return _DTYPES[dtype]


def _meta_type(val: Any) -> tuple[tuple[int, ...], Attribute]:
    if not isinstance(val, torch.Tensor):
        raise ConversionError(f"non-tensor value {type(val).__name__}")
    shape = tuple(int(d) for d in val.shape)
    return shape, elt_of_dtype(val.dtype)


@dataclass
class Call:
    """One ATen call being converted."""

    em: Emitter
    node: torch.fx.Node
    a: dict[str, Any]
    """Arguments by schema name (defaults filled in), FX nodes replaced by IR values."""

    def out(self, i: int | None = None) -> tuple[tuple[int, ...], Attribute]:
        """Shape and element type of the result (``i``: of the i-th result)."""
        val = self.node.meta.get("val")
        if i is not None:
            if not isinstance(val, tuple | list):
                raise ConversionError(f"result {i} of a single result")
            val = val[i]
        return _meta_type(val)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.out()[0]

    @property
    def out_elt(self) -> Attribute:
        return self.out()[1]

    def dim(self, rank: int, name: str = "dim") -> int:
        """The dim argument ``name`` as an index into ``rank`` dims (a negative dim counts from
        the end, as in torch; a 0-d tensor's dim is 0)."""
        return self.a[name] % max(rank, 1)

    def tensor(self, name: str) -> SSAValue:
        """A tensor argument."""
        v = self.a[name]
        if not isinstance(v, SSAValue):
            raise ConversionError(f"argument {name} is not a tensor")
        return v


Converter = Callable[[Call], Result]


class ConverterTable(dict[str, Converter]):
    """ATen op name (``aten.add.Tensor``) -> converter: one family's table, filled by its
    :meth:`converts` decorators (``compiler/frontend/registry.py`` joins the families)."""

    def converts(self, *names: str) -> Callable[[Converter], Converter]:
        """Register the decorated function as the converter of the given ATen op names."""

        def register(fn: Converter) -> Converter:
            for name in names:
                if name in self:
                    raise ValueError(
                        f"two converters for {name}: {self[name].__name__}, {fn.__name__}"
                    )
                self[name] = fn
            return fn

        return register


def op_name(target: Any) -> str:
    """The table key of an FX call target (``aten.add.Tensor``)."""
    return str(target)


def normalize_args(
    node: torch.fx.Node, args: Sequence[Any], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Arguments by schema name, defaults filled in."""
    schema = getattr(node.target, "_schema", None)
    if schema is None:
        return {**{str(i): a for i, a in enumerate(args)}, **kwargs}
    out: dict[str, Any] = {}
    for i, arg in enumerate(schema.arguments):
        if not arg.kwarg_only and i < len(args):
            out[arg.name] = args[i]
        elif arg.name in kwargs:
            out[arg.name] = kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
        else:
            out[arg.name] = None
    return out
