"""Tile choice and buffer sizing for tiled iteration spaces (shared by the two lowering passes).

A kernel's iteration space is streamed through the fabric one tile at a time: a tile is a box of
``tile[c]`` consecutive values of every counter ``c``. A tile touches, in each buffer the kernel
reads or writes, at most ``prod(tile[c] for c with stride[c] != 0)`` elements (a counter with
stride 0 revisits the same element). Each PMU double-buffers its tiles (``NBUF``), so that the
next tile loads while the PCU works on the current one.

The rule (``choose_tile``), from the target:

1. the lanes counter (``runtime.machine.rules.lanes_counter``: the innermost counter that is not
   reduced and has an extent above 1) gets ``min(extent, pcu_lanes * per_lane)`` (a full vector
   of lanes; ``per_lane``, the elements a 32-bit lane holds, is 2 when every operand and the
   result are bf16, else 1: ``runtime.machine.opcodes.ELEMENT_TYPES``), every other counter 1;
2. then, in rounds, each counter in turn (the lanes counter first, then from the innermost
   outwards) doubles, capped by its extent, if the bytes of all the tiles (every operand's and
   the result's) times ``NBUF`` still fit one PMU (``target.pmu_bytes``); rounds repeat until no
   counter can grow. A tile is spread over the PMU's ``pmu_banks`` banks, so it takes its
   elements rounded up to a multiple of the banks (a bank holds whole words). Doubling keeps the
   lanes counter a multiple of ``pcu_lanes`` (or its whole extent) and spreads the tile over all
   counters, so operands are reused across it. A bank word holds ``per_lane`` elements of the
   buffer's dtype (two bf16), so a tile's bytes are its elements rounded up to whole words of
   every bank: ``ceil(n / (banks * per_lane)) * banks * per_lane * bytes``.

Banking (``choose_bank_skew``): a PMU delivers a vector in as many cycles as the most of its
elements that fall in one bank (``runtime.machine.perf.bank_cycles``). A vector that walks down a
column (a stride that is a multiple of the banks: a transposed operand, the rows of an outer-product
matrix multiply) would hit one bank only; a skewed PMU puts element ``a`` in bank
``(a + a // skew) % banks``, and each buffer gets the skew (none, or one of the strides its
units' vectors walk) that makes its units' vectors cheapest, weighted by how many they read.

For example on ``plasticine`` (16 lanes, 256 KiB PMUs) a ``[16, 64] x [64, 128]`` f32 matmul
(counters M, N, K) fits whole: ``tile [16, 128, 64]``; ``[1024, 4096] x [4096, 4096]`` gets
``tile [16, 512, 32]``.

The rule only reads extents and strides, so the IR never grows with the size of a tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.ir import Attribute

from compiler.targets import Target
from dialects.dataflow import fabric_dtype
from runtime.machine.opcodes import DTYPE_BYTES, ELEMENT_TYPES
from runtime.machine.perf import bank_cycles
from runtime.machine.rules import lanes_counter

NBUF = 2
"""N-buffering of every PMU: one tile in use, one loading."""


def element_dtype(typ: Attribute) -> str:
    """The fabric dtype of element type ``typ`` (a ``ValueError`` when the fabric lacks it)."""
    name = fabric_dtype(typ)
    if name not in DTYPE_BYTES:
        held = ", ".join(DTYPE_BYTES)
        raise ValueError(f"element type {typ} is not supported yet (the fabric holds {held})")
    return name


def element_bytes(typ: Attribute) -> int:
    """Bytes one element of ``typ`` takes in a PMU: ``DTYPE_BYTES`` of its fabric dtype."""
    return DTYPE_BYTES[element_dtype(typ)]


def tile_elements(strides: Sequence[int], tile: Sequence[int]) -> int:
    """Elements of a buffer one tile touches through an access with ``strides`` (upper bound)."""
    n = 1
    for stride, extent in zip(strides, tile, strict=True):
        if stride != 0:
            n *= extent
    return n


def choose_tile(
    space: Sequence[int],
    accesses: Sequence[tuple[Sequence[int], str]],
    out_strides: Sequence[int],
    target: Target,
) -> list[int]:
    """A tile for ``space`` (see the module docstring).

    ``accesses`` lists ``(strides, fabric dtype)`` for every operand and the result.
    """
    rank = len(space)
    if rank == 0:
        return []
    at_lanes = lanes_counter(space, out_strides)
    tile = [1] * rank
    per_lane = min((ELEMENT_TYPES[d].per_lane for _, d in accesses), default=1)
    tile[at_lanes] = max(1, min(space[at_lanes], target.pcu_lanes * per_lane))
    banks = max(1, target.pmu_banks)
    widths = [(s, ELEMENT_TYPES[d].bytes, banks * ELEMENT_TYPES[d].per_lane) for s, d in accesses]

    def fits(candidate: Sequence[int]) -> bool:
        total = sum(-(-tile_elements(s, candidate) // row) * row * b for s, b, row in widths)
        return total * NBUF <= target.pmu_bytes

    if not fits(tile):
        return tile
    order = [at_lanes] + [c for c in reversed(range(rank)) if c != at_lanes]
    grew = True
    while grew:
        grew = False
        for c in order:
            if tile[c] >= space[c]:
                continue
            trial = list(tile)
            trial[c] = min(space[c], tile[c] * 2)
            if fits(trial):
                tile = trial
                grew = True
    return tile


def buffer_tile_bytes(footprints: Sequence[int], total_bytes: int, target: Target) -> int:
    """``tile_bytes`` of a PMU: the largest tile (in bytes) any unit streams through it.

    ``footprints`` are the tile bytes of the accesses that read or write the buffer; a buffer
    nothing streams through (a section argument yielded as is) moves in tiles as large as fit.
    """
    limit = max(1, target.pmu_bytes // NBUF)
    if not footprints:
        return max(1, min(total_bytes, limit))
    return max(1, min(max(footprints), limit))


def choose_bank_skew(
    vectors: Sequence[tuple[int, Sequence[tuple[int, int]]]], banks: int, per_word: int = 1
) -> int:
    """The bank skew of a PMU (see the module docstring): ``vectors`` lists, for every stream
    through the PMU, how many vectors it moves and the ``(stride, count)`` of the elements of one
    vector; ``per_word``: elements a bank word holds (2 for bf16). 0 (no skew) unless a skew
    makes the streams cheaper; ties go to the smaller skew."""
    candidates = sorted({0} | {abs(s) for _, along in vectors for s, n in along if n > 1 and s})

    def cost(skew: int) -> int:
        return sum(n * bank_cycles(along, banks, skew, per_word=per_word) for n, along in vectors)

    return min(candidates, key=lambda skew: (cost(skew), skew))


class TileChoices:
    """``choose_tile`` and ``choose_bank_skew`` for ``target``, each answer remembered for
    equal arguments during one run of a pass (a pass makes its own: the compiler keeps no
    module-level cache). The blocks of a model repeat their kernels: lowering GPT-2 small asks
    for 6,268 tiles (290 distinct, about 60 us each) and 2,593 skews (114 distinct, about
    100 us each)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._tiles: dict[tuple[object, ...], tuple[int, ...]] = {}
        self._skews: dict[tuple[object, ...], int] = {}

    def tile(
        self,
        space: Sequence[int],
        accesses: Sequence[tuple[Sequence[int], str]],
        out_strides: Sequence[int],
    ) -> list[int]:
        """``choose_tile(space, accesses, out_strides, target)``."""
        key = (tuple(space), tuple((tuple(s), d) for s, d in accesses), tuple(out_strides))
        tile = self._tiles.get(key)
        if tile is None:
            tile = tuple(choose_tile(space, accesses, out_strides, self.target))
            self._tiles[key] = tile
        return list(tile)

    def bank_skew(
        self, vectors: Sequence[tuple[int, Sequence[tuple[int, int]]]], banks: int, per_word: int
    ) -> int:
        """``choose_bank_skew(vectors, banks, per_word)``."""
        key = (tuple((n, tuple(map(tuple, along))) for n, along in vectors), banks, per_word)
        skew = self._skews.get(key)
        if skew is None:
            skew = self._skews[key] = choose_bank_skew(vectors, banks, per_word)
        return skew
