"""What each unit implements: the traced values (torch ops) and model lines folded into it.

A PCU's own location names one traced value and one line: its kernel's, which after
``fuse-elementwise`` is the consumer's of a fused chain (``loc("tanh"("model.py":27:0))``).
The producers fused into it leave no trace in the later IR, so ``rdu-compile`` records the
kernels twice, before and after fusion (``note_kernels``), and a kernel that is gone was
inlined into its one reader (what ``fuse-elementwise`` does), transitively:

    before fusion:  add_0 (addmm, model.py:26) -> tanh_1 (tanh, model.py:27)
    after fusion:   tanh_1
    origin of a PCU named tanh_1 (or tanh_1.0, a part of it split by split-units):
                    values (addmm, tanh), lines (model.py:26, model.py:27)

Kernels are named ``<kind>_<i>``, unique in their dataflow section (``forward``,
``backward``, ``optimizer``: a PEF section's ``kind``); a unit keeps its kernel's name, a part
of a split one adds ``.N``. Views fold into accesses and make no kernel: their lines are not
listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation

from compiler.value_names import source_line, value_name
from dialects.dataflow import SectionOp
from dialects.rdu_tile import KernelOp

KernelKey = tuple[str, str]
"""(dataflow section, kernel name)."""


@dataclass(frozen=True)
class Origin:
    """The traced values (FX node names, in dataflow order) and model lines (``file:line``) a
    unit implements."""

    values: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()


@dataclass
class Provenance:
    """The kernels of one compile before and after fusion (see the module docstring)."""

    own: dict[KernelKey, tuple[str, str]] = field(default_factory=dict)
    """Each kernel's own traced value ("" if none) and line, before fusion."""
    order: list[KernelKey] = field(default_factory=list)
    readers: dict[KernelKey, list[KernelKey]] = field(default_factory=dict)
    kept: set[KernelKey] | None = None
    """The kernels left after fusion (None: no fusion ran, every kernel is kept)."""

    def note_kernels(self, module: ModuleOp, *, fused: bool) -> None:
        """Record the kernels of ``module``: at the ``rdu_tile`` stage (``fused`` False) their
        values, lines and readers; after ``fuse-elementwise`` (True) which are left."""
        keys: set[KernelKey] = set()
        for section, kernel in _kernels(module):
            key = (section, kernel.sym_name.data if kernel.sym_name else "")
            keys.add(key)
            if fused:
                continue
            self.order.append(key)
            self.own[key] = (value_name(kernel.location), source_line(kernel.location))
            for operand in kernel.inputs:
                producer = operand.owner
                if isinstance(producer, KernelOp) and producer.sym_name:
                    self.readers.setdefault((section, producer.sym_name.data), []).append(key)
        if fused:
            self.kept = keys

    def origins(self) -> dict[KernelKey, Origin]:
        """Every kept kernel's origin: its own value and line and those of every kernel fused
        into it, in dataflow order."""
        owner: dict[KernelKey, KernelKey] = {}

        def owner_of(key: KernelKey) -> KernelKey | None:
            seen: set[KernelKey] = set()
            while self.kept is not None and key not in self.kept:
                readers = self.readers.get(key, [])
                if len(readers) != 1 or key in seen:
                    return None  # not fused (dead, or read twice): nobody implements it
                seen.add(key)
                key = readers[0]
            return key

        for key in self.order:
            found = owner_of(key)
            if found is not None:
                owner[key] = found
        values: dict[KernelKey, list[str]] = {}
        lines: dict[KernelKey, list[str]] = {}
        for key in self.order:
            if key not in owner:
                continue
            value, line = self.own[key]
            target = owner[key]
            if value and value not in values.setdefault(target, []):
                values[target].append(value)
            if line and line not in lines.setdefault(target, []):
                lines[target].append(line)
        return {
            key: Origin(tuple(values.get(key, ())), tuple(lines.get(key, ())))
            for key in set(owner.values())
        }


def unit_kernel(section_kind: str, pcu_name: str) -> KernelKey:
    """The kernel a unit comes from: ``tanh_1.0`` (a part of a split unit) is ``tanh_1``'s."""
    return (section_kind, pcu_name.split(".")[0])


def _kernels(module: ModuleOp) -> list[tuple[str, KernelOp]]:
    found: list[tuple[str, KernelOp]] = []
    for section in module.ops:
        if not isinstance(section, SectionOp):
            continue
        name = section.sym_name.data
        op: Operation
        for op in section.body.block.ops:
            if isinstance(op, KernelOp):
                found.append((name, op))
    return found
