"""A section as the PEF stores it, where that differs from ``schema.Section``: its routes packed.

A route in memory (``schema.Route``) names its endpoints as ``("pcu"|"pmu"|"dram", index)`` and
its path as every switch it passes, ``[[x, y], ...]``; routes are a third of a section's bytes
that way. In the file (``PackedRoute``) an endpoint is a kind number and an index, and the path
is its first switch and one letter a step, since each hop is adjacent to the one before::

    Route(src=("pmu", 3), dst=("pcu", 1), hops=[[0, 5], [1, 5], [1, 4]])
    PackedRoute(src_kind=1, src=3, dst_kind=0, dst=1, start=[0, 5], steps="EN")

Steps: ``E`` x+1, ``W`` x-1, ``S`` y+1, ``N`` y-1. ``start`` is ``[]`` for a route of no hops.
Unpacking gives back the same ``schema.Route``; the validator then checks it as any other (a
corrupted step can still leave the switch grid, and is refused there). A route whose hops are
not adjacent has no packed form: ``pack_section`` refuses it.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from runtime.pef.schema import Output, Payload, Pcu, Pmu, Route, Section, SectionKind
from runtime.pef.validate import PefError

ENDPOINT_KINDS = ("pcu", "pmu", "dram")
"""A packed endpoint's kind number is its place here."""
STEPS = {"E": (1, 0), "W": (-1, 0), "S": (0, 1), "N": (0, -1)}
_LETTER = {step: letter for letter, step in STEPS.items()}
Kind = Annotated[int, msgspec.Meta(ge=0, le=len(ENDPOINT_KINDS) - 1)]


class PackedRoute(Payload, frozen=True):
    """``schema.Route`` in the file (see the module docstring)."""

    src_kind: Kind
    src: int
    dst_kind: Kind
    dst: int
    start: Annotated[list[int], msgspec.Meta(max_length=2)]
    steps: Annotated[str, msgspec.Meta(pattern="^[EWSN]*$")]
    taps: list[list[int]] = []
    scalar: bool = False


class PackedSection(Payload, frozen=True):
    """``schema.Section`` in the file: the same fields, its routes packed."""

    name: str
    kind: SectionKind
    inputs: list[int]
    outputs: list[Output]
    pmus: list[Pmu]
    pcus: list[Pcu]
    routes: list[PackedRoute]


_encoder = msgspec.msgpack.Encoder()


def encode_section(section: Section) -> bytes:
    """The payload bytes of ``section`` in a PEF (also its configuration bytes, which loading
    it onto the fabric reads: ``runtime.machine.perf.load_cycles``)."""
    return _encoder.encode(pack_section(section))


def pack_section(section: Section) -> PackedSection:
    """``section`` as the file stores it; a ``PefError`` for a route that has no packed form."""
    return PackedSection(
        name=section.name,
        kind=section.kind,
        inputs=section.inputs,
        outputs=section.outputs,
        pmus=section.pmus,
        pcus=section.pcus,
        routes=[_pack_route(section.name, r, route) for r, route in enumerate(section.routes)],
    )


def unpack_section(packed: PackedSection) -> Section:
    """The ``schema.Section`` a decoded ``PackedSection`` stores (not yet validated)."""
    return Section(
        name=packed.name,
        kind=packed.kind,
        inputs=packed.inputs,
        outputs=packed.outputs,
        pmus=packed.pmus,
        pcus=packed.pcus,
        routes=[_unpack_route(packed.name, r, route) for r, route in enumerate(packed.routes)],
    )


def _pack_route(section: str, r: int, route: Route) -> PackedRoute:
    ends = []
    for end, (kind, _) in (("src", route.src), ("dst", route.dst)):
        if kind not in ENDPOINT_KINDS:
            raise PefError(
                f"section '{section}': route {r}: {end} kind '{kind}' is not pcu, pmu or dram"
            )
        ends.append(ENDPOINT_KINDS.index(kind))
    letters = []
    for h in range(1, len(route.hops)):
        (x0, y0), (x1, y1) = route.hops[h - 1], route.hops[h]
        letter = _LETTER.get((x1 - x0, y1 - y0))
        if letter is None:
            raise PefError(
                f"section '{section}': route {r}: hop {h} {list(route.hops[h])} is not adjacent "
                f"to hop {h - 1} {list(route.hops[h - 1])}"
            )
        letters.append(letter)
    return PackedRoute(
        src_kind=ends[0],
        src=route.src[1],
        dst_kind=ends[1],
        dst=route.dst[1],
        start=list(route.hops[0]) if route.hops else [],
        steps="".join(letters),
        taps=route.taps,
        scalar=route.scalar,
    )


def _unpack_route(section: str, r: int, packed: PackedRoute) -> Route:
    if len(packed.start) == 1 or (packed.steps and not packed.start):
        raise PefError(
            f"section '{section}': route {r}: start {packed.start} is not a switch [x, y] "
            f"before {len(packed.steps)} steps"
        )
    hops: list[list[int]] = []
    if packed.start:
        hops.append(list(packed.start))
        x, y = packed.start
        for letter in packed.steps:
            dx, dy = STEPS[letter]
            x, y = x + dx, y + dy
            hops.append([x, y])
    return Route(
        src=(ENDPOINT_KINDS[packed.src_kind], packed.src),
        dst=(ENDPOINT_KINDS[packed.dst_kind], packed.dst),
        hops=hops,
        taps=packed.taps,
        scalar=packed.scalar,
    )
