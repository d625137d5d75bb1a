"""assign-pmus: set on every ``pmu.buffer`` how many PMUs its tensor occupies (``pmus``).

A buffer streams its tensor through one PMU in tiles when it is loaded from or stored to DRAM,
or when every PCU of the section reading it reads it in the order its PCU writes it. Otherwise
it holds the whole tensor on chip, ``ceil(bytes / target.pmu_bytes)`` PMUs (its address range
cut in consecutive pieces):

- a buffer a PCU writes and another PCU of the section reads out of the order it was written
  (a transposed or broadcast read, a reduction's result read before the reduction is over, a
  gather);
- every buffer a parallel unit (``parallel [...]``, see parallelize-units) reads or writes, its
  copies each reading or writing their own block of it, loaded from DRAM once: in at least as
  many PMUs as streams leave or enter it (``parallel_layout.held_pmus``).

One PMU is left unset; a stale ``pmus`` is replaced. The counts depend on the section a buffer
is in: partition-sections counts again (``ir_helpers.assign_pmus``) in the pieces it cuts.

Before, on ``tiny`` (16 KiB a PMU), a 64x128 f32 part that the matmul reads once for every
column of its result (stride 0 on its counter ``n``)::

    %p = pcu.unit @"matmul_0.0" (%a) space [64, 128] ... out #rdu_tile.access<0 : [128, 1]> ...
    %pb = pmu.buffer %p {name = "matmul_0.0", ...} : tensor<64x128xf32> -> memref<64x128xf32>
    %r = pcu.unit @matmul_0 (%b, %pb) space [64, 4, 128] ...
           ins [..., #rdu_tile.access<0 : [128, 0, 1]>] ...

After (32 KiB: 2 PMUs)::

    %pb = pmu.buffer %p {name = "matmul_0.0", ..., pmus = 2 : i64} : ...
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from compiler.passes.ir_helpers import assign_pmus, pass_target
from dialects.dataflow import SectionOp


@dataclass(frozen=True)
class AssignPmus(ModulePass):
    """Count the PMUs of every buffer (see the module docstring)."""

    name = "assign-pmus"

    target: str = "plasticine"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        target = pass_target(self.target)
        for section in op.walk():
            if isinstance(section, SectionOp):
                assign_pmus(section, target)
