"""The ``pmu`` dialect: pattern memory units (on-chip buffers).

A ``pmu.buffer`` is one PMU holding one tensor, streamed through in tiles of ``tile_bytes`` with
``nbuf``-fold buffering over ``banks`` banks. Its source is either a section argument (an address
generator loads it from DRAM) or a ``pcu.unit`` result (the PCU writes it). Its result is a
``memref`` that ``pcu.unit`` ops read and ``dataflow.yield`` stores back to DRAM.

    %w_pmu = pmu.buffer %w {name = "net.0.weight", tile_bytes = 8192 : i64, nbuf = 2 : i64,
                            banks = 16 : i64} : tensor<64x128xf32> -> memref<64x128xf32>

A tensor that must stay on chip whole (see assign-pmus) and is larger than one PMU spans
several: ``pmus = N : i64`` (absent: 1) says how many PMUs of the grid the buffer occupies, its
address range cut into ``N`` consecutive pieces of at most ``target.pmu_bytes`` each.

``bank_skew = N`` (optional, set by convert-rdu-tile-to-pcu-pmu) skews the banking: element ``a``
lives in bank ``(a + a // N) % banks`` instead of ``a % banks``, so that vectors down a column of
``N`` elements spread over the banks too (see ``compiler/passes/tiling.py``).

place-and-route adds (all ``array<i64: ...>``):

- ``at = array<i64: x, y>``: the PMU's slot on the grid;
- ``route = array<i64: x0, y0, x1, y1, ...>``: the switch coordinates (flattened pairs) of the
  stream that fills the buffer, from DRAM or from its producing PCU;
- ``store_route = array<i64: ...>``: likewise, of the stream storing it to DRAM (only on buffers
  that a section yields);
- ``more_at = array<i64: x1, y1, ...>``: the slots of the buffer's other PMUs when ``pmus > 1``
  (flattened pairs, ``pmus - 1`` of them).
"""

from __future__ import annotations

import functools

from xdsl.dialects.builtin import (
    I64,
    DenseArrayBase,
    IntegerAttr,
    MemRefType,
    StringAttr,
    TensorType,
    i64,
)
from xdsl.ir import Attribute, Block, Dialect, Operation, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.traits import NoMemoryEffect
from xdsl.utils.exceptions import VerifyException


@functools.lru_cache(maxsize=1024)
def _memref_of(tensor: TensorType[Attribute]) -> MemRefType[Attribute]:
    """The memref of a tensor's shape and element type: one object a type (attributes are
    immutable), built once (xdsl's ``MemRefType`` checks its shape with ``isa``, 35 us a
    call)."""
    return MemRefType(tensor.element_type, tensor.get_shape())


@irdl_op_definition
class BufferOp(IRDLOperation):
    """A PMU holding one tensor (see the module docstring)."""

    name = "pmu.buffer"

    source = operand_def(TensorType)
    result = result_def(MemRefType)

    buffer_name = prop_def(StringAttr, prop_name="name")
    tile_bytes = prop_def(IntegerAttr[I64])
    nbuf = prop_def(IntegerAttr[I64])
    banks = prop_def(IntegerAttr[I64])
    bank_skew = opt_prop_def(IntegerAttr[I64])
    at = opt_prop_def(DenseArrayBase.constr(I64))
    route = opt_prop_def(DenseArrayBase.constr(I64))
    store_route = opt_prop_def(DenseArrayBase.constr(I64))
    pmus = opt_prop_def(IntegerAttr[I64])
    more_at = opt_prop_def(DenseArrayBase.constr(I64))

    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$source attr-dict `:` type($source) `->` type($result)"

    traits = traits_def(NoMemoryEffect())

    def __init__(
        self,
        source: SSAValue | Operation,
        name: str,
        tile_bytes: int,
        nbuf: int,
        banks: int,
    ) -> None:
        src = SSAValue.get(source)
        assert isinstance(src.type, TensorType)
        result_type = _memref_of(src.type)
        super().__init__(
            operands=[src],
            result_types=[result_type],
            properties={
                "name": StringAttr(name),
                "tile_bytes": IntegerAttr(tile_bytes, i64),
                "nbuf": IntegerAttr(nbuf, i64),
                "banks": IntegerAttr(banks, i64),
            },
        )

    @property
    def num_pmus(self) -> int:
        """How many PMUs the buffer occupies (``pmus``, 1 when absent)."""
        return 1 if self.pmus is None else self.pmus.value.data

    @property
    def from_dram(self) -> bool:
        """Whether an address generator loads this buffer from DRAM (its source is an argument)."""
        return isinstance(self.source.owner, Block)

    def verify_(self) -> None:
        what = f'pmu.buffer "{self.buffer_name.data}"'
        src = self.source.type
        res = self.result.type
        assert isinstance(src, TensorType) and isinstance(res, MemRefType)
        if tuple(src.get_shape()) != tuple(res.get_shape()) or (
            src.element_type != res.element_type
        ):
            raise VerifyException(
                f"{what}: result {res} must have the shape and element type of its source {src}"
            )
        owner = self.source.owner
        if isinstance(owner, Operation) and owner.name != "pcu.unit":
            raise VerifyException(
                f"{what}: source must be a section argument or a 'pcu.unit' result, got a "
                f"'{owner.name}' result"
            )
        for key, attr, low in (
            ("tile_bytes", self.tile_bytes, 1),
            ("nbuf", self.nbuf, 1),
            ("banks", self.banks, 1),
        ):
            if attr.value.data < low:
                raise VerifyException(f"{what}: {key} must be >= {low}, got {attr.value.data}")
        if self.bank_skew is not None and self.bank_skew.value.data < 1:
            raise VerifyException(
                f"{what}: bank_skew must be >= 1 (leave it out for none), got "
                f"{self.bank_skew.value.data}"
            )
        if self.at is not None and len(self.at) != 2:
            raise VerifyException(f"{what}: 'at' must be [x, y], got {len(self.at)} values")
        if self.num_pmus < 1:
            raise VerifyException(f"{what}: pmus must be >= 1, got {self.num_pmus}")
        if self.more_at is not None and len(self.more_at) != 2 * (self.num_pmus - 1):
            raise VerifyException(
                f"{what}: 'more_at' must hold the [x, y] slots of its other {self.num_pmus - 1} "
                f"PMUs, got {len(self.more_at)} values"
            )
        for key, route in (("route", self.route), ("store_route", self.store_route)):
            if route is not None and (len(route) == 0 or len(route) % 2):
                raise VerifyException(
                    f"{what}: '{key}' must be flattened [x, y] switch coordinates (a non-empty, "
                    f"even number of values), got {len(route)} values"
                )


Pmu = Dialect("pmu", [BufferOp], [])
"""The pmu dialect."""
