"""The PEF payload schema: what the compiler writes and the runtime reads.

Every payload is a msgpack document decoded with msgspec against these Structs, so a field of the
wrong type or a missing field is refused while decoding, before anything runs. The container
around the payloads (magic, version, section table, checksums) is in ``container.py``.

Conventions:
- Coordinates are ``[x, y]`` on the target's unit grid; switches sit on a ``(cols+1) x (rows+1)``
  grid of their own and a route is the list of switch coordinates a stream passes through.
- An ``Access`` maps a PCU's counters to flat element addresses in a PMU's row-major buffer:
  ``address = offset + sum(strides[c] * counter[c])``.
- Inside a PCU, values are numbered: ``0 .. len(inputs)-1`` are the input ports, and stage ``i``
  produces value ``len(inputs) + i``.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec
import msgspec.inspect

from runtime.machine.opcodes import Dtype

Role = Literal[
    "input",
    "label",
    "parameter",
    "buffer",
    "activation",
    "gradient",
    "optimizer_state",
    "hyperparameter",
    "output",
    "loss",
    "spill",
]
"""``spill``: a value one section of a cut graph leaves in DRAM for a later one of the same kind
(named ``spill.<section>.<buffer>``, see ``compiler/passes/partition_sections.py``)."""
SectionKind = Literal["forward", "backward", "optimizer"]
Combiner = Literal["none", "add", "max", "min"]


class Payload(msgspec.Struct, frozen=True, forbid_unknown_fields=True, array_like=True):
    """The base of every Struct a PEF payload holds: encoded as a msgpack array of its fields'
    values in declaration order (``array_like``), not a map repeating each field's name in
    every unit, port and route; a missing field, an extra one or a value of the wrong type is
    refused while decoding all the same. So a field's place is its name on the wire: a new
    field goes last, with a default, or the format version changes. (Each subclass says
    ``frozen=True`` again for the type checker; msgspec inherits the whole configuration.)"""


_INDEX_PATH = re.compile(r"- at `\$((?:\[\d+\])*)`$")


def named_path(message: str, root: object) -> str:
    """``message`` with msgspec's path of array indices (``$[5][0][4]``: every Struct is an
    array on the wire) given the schema's field names (``$.pcus[0].lanes``)."""
    match = _INDEX_PATH.search(message)
    if match is None:
        return message
    node = msgspec.inspect.type_info(root)
    named = "$"
    for index in map(int, re.findall(r"\d+", match.group(1))):
        if isinstance(node, msgspec.inspect.StructType) and index < len(node.fields):
            named += f".{node.fields[index].name}"
            node = node.fields[index].type
        elif isinstance(node, msgspec.inspect.ListType):
            named += f"[{index}]"
            node = node.item_type
        else:
            named += f"[{index}]"
            node = None
    return f"{message[: match.start()]}- at `{named}`"


class Symbol(Payload, frozen=True):
    """A tensor in off-chip memory (DRAM), shared by name between sections and the host."""

    name: str
    shape: list[int]
    dtype: Dtype
    role: Role


class Access(Payload, frozen=True):
    """An address generator program: flat address = offset + sum(strides[c] * counter[c]).

    A data-dependent access (``index_port >= 0``: a gather on an input port, a scatter on the
    output) adds ``index_stride * v``, ``v`` being the i64 value input port ``index_port``
    reads at the same point; ``v`` must be in ``[0, index_limit)`` (checked at run time).
    """

    offset: int
    strides: list[int]
    index_port: int = -1
    index_stride: int = 0
    index_limit: int = 0


class Port(Payload, frozen=True):
    """A PCU input port: which PMU streams into it and with what address pattern."""

    pmu: int
    access: Access
    register: bool = False
    """A register port: the PCU reads its one address once, when the section starts, and holds
    the value in a register for the whole run, instead of a stream of vectors (allowed when
    ``runtime.machine.rules.register_problem`` says so: one address at every point). Its route
    carries that one element, on the scalar network when the target has one
    (``Route.scalar``)."""


class Stage(Payload, frozen=True):
    """One pipeline stage of a PCU.

    ``op`` is an opcode (see ``runtime.fabric.OPCODES``); ``args`` are value numbers;
    ``imm`` is the immediate of ``const`` and the counter index of ``counter``.
    """

    op: str
    args: list[int]
    dtype: Dtype
    imm: float | int | None = None


class Pcu(Payload, frozen=True):
    """A pattern compute unit: counter chain, input ports, stage pipeline, one output stream."""

    name: str
    loc: str
    at: list[int]
    space: list[int]
    tile: list[int]
    lanes: int
    inputs: list[Port]
    stages: list[Stage]
    result: int
    out_pmu: int
    out: Access
    combiner: Combiner
    dtype: Dtype
    value: str = ""
    """The traced value (FX node name, e.g. ``relu``) whose value the output PMU holds once the
    unit has run, in the torch tensor's row-major order; "" when it holds an intermediate value
    (a part of a split unit, the matmul inside an ``addmm``). ``rdu-test`` compares it with
    torch's value of that node to find the first unit that diverges."""
    parallel: list[int] = []
    """A parallel unit (empty: one PCU): one factor ``p[c]`` a counter, the unit being ``P =
    prod(p)`` identical PCUs ("copies"). Copy ``k`` (row-major over the factors, a multi-index
    ``k[c]``) runs counter ``c`` over its block ``[k[c] * b[c], min(space[c], (k[c] + 1) *
    b[c]))``, ``b[c] = ceil(space[c] / p[c])``, with the same accesses (each copy's counters
    start at its block): together they compute what the unit computes on one PCU. A factor above
    1 only on a counter that is not reduced; no data-dependent access, ``counter`` or ``rand``
    stage (they would see the copy's own counters); a PMU read through one access only (its
    multicast routes feed every port reading it)."""
    more_at: list[list[int]] = []
    """The slots of copies ``1 .. P-1`` (copy 0 is at ``at``); distinct PCU slots."""
    interleaved: bool = False
    """A parallel unit whose copies take the points of each split counter but the lanes
    counter in turn: copy ``k`` runs such a counter ``c`` over ``k[c], k[c] + p[c], k[c] + 2
    p[c], ...`` instead of its block (``runtime.machine.rules.copy_points``,
    ``interleaved_counters``), so that together they write its rows in order, as one PCU
    would. It needs a split counter besides the lanes counter (``rules.interleave_problem``)."""


class Pmu(Payload, frozen=True):
    """A pattern memory unit holding one tensor (streamed through in tiles of tile_bytes)."""

    name: str
    at: list[int]
    shape: list[int]
    dtype: Dtype
    tile_bytes: int
    nbuf: int
    banks: int
    source: Literal["dram", "pcu"]
    symbol: int = -1
    producer: int = -1
    bank_skew: int = 0
    """Banking: element ``a`` lives in bank ``(a + a // bank_skew) % banks`` (0: ``a % banks``),
    so that vectors along a row and down a column of ``bank_skew`` elements both spread over
    the banks."""
    pmus: int = 1
    """How many PMUs the tensor occupies: one unless it must stay on chip whole and is larger
    than a PMU, or its readers' and writers' streams want more (a parallel unit's multicast
    groups); its address range is cut into ``pmus`` consecutive pieces of equal size."""
    more_at: list[list[int]] = []
    """The slots of its PMUs after the first (``at``): ``pmus - 1`` of them."""


class Route(Payload, frozen=True):
    """A stream through the switches.

    ``src``/``dst`` name the endpoints as ``["pcu"|"pmu"|"dram", index]``; for ``dram`` the index
    is the symbol. ``hops`` are the switch coordinates from the source's switch to the
    destination's, each adjacent to the next. In the file a route is packed: its endpoints'
    kinds as numbers, its path as its first switch and a letter a step (``runtime/pef/wire.py``).
    """

    src: tuple[str, int]
    dst: tuple[str, int]
    hops: list[list[int]]
    taps: list[list[int]] = []
    """Only on a route of a parallel PCU (``Pcu.parallel``): ``[pcu, copy]`` pairs. A route
    into a parallel PCU is a multicast: one stream from a PMU of the buffer (``hops[0]`` is the
    switch of ``at`` or of one of ``more_at``) that feeds every copy in ``taps``, passing each
    one's switch on its way (every input port of those copies reading that PMU). A route out of
    a parallel PCU names its one source copy (``hops[0]`` is that copy's switch) and ends at the
    switch of one of the PMUs of the output buffer."""
    scalar: bool = False
    """A route on the scalar network (``runtime.machine.rules.on_scalar_network``): exactly the
    routes from a PMU into the register ports of a PCU, on a target with a scalar network
    (``Target.scalar_link_capacity``). It takes no room on the vector links; the routes of one
    PMU's registers share a track of each scalar link they pass (``rules.link_loads``)."""


class Output(Payload, frozen=True):
    """A section result: the PMU whose contents are stored to the DRAM symbol."""

    symbol: int
    pmu: int


class Section(Payload, frozen=True):
    """One section: its DRAM bindings and the configured units, PCUs in dataflow order."""

    name: str
    kind: SectionKind
    inputs: list[int]
    outputs: list[Output]
    pmus: list[Pmu]
    pcus: list[Pcu]
    routes: list[Route]


class Target(Payload, frozen=True):
    """What the PEF was compiled for (the runtime checks capacities against it)."""

    name: str
    cols: int
    rows: int
    pcu_lanes: int
    pcu_stages: int
    pmu_bytes: int
    pmu_banks: int
    clock_ghz: float
    link_capacity: int
    """Streams one switch-to-switch link carries at once."""
    dram_gbps: float = 0.0
    """Off-chip (DRAM) bandwidth in GB/s (1e9 bytes a second); 0: not given, not modelled."""
    stream_bytes_per_cycle: int = 0
    """Bytes one stream moves over a link in a cycle; 0: not given, one vector of ``pcu_lanes``
    32-bit words."""
    dram_latency_ns: float = 0.0
    """Nanoseconds from a DRAM request to its first bytes (0: not given, not modelled)."""
    config_latency_ns: float = 0.0
    """Nanoseconds loading a section takes beyond reading its configuration bytes from DRAM
    (0: not given, not modelled)."""
    pcu_bf16_lanes: int = 0
    """bf16 multiply-adds a PCU stage does a cycle (a 32-bit lane doing two bf16 ones: twice
    ``pcu_lanes``); 0: not given, bf16 at the f32 rate (``pcu_lanes``). A unit whose every
    stream is bf16 runs at this rate (``runtime/machine/perf.py``), and a bf16 PEF's peak is
    counted with it."""
    scalar_link_capacity: int = 0
    """PMUs whose register values one link of the scalar network carries at once (a track
    each, see ``runtime.machine.rules.link_loads``); 0: no scalar network, register ports'
    routes ride the vector links."""


class Collective(Payload, frozen=True):
    """A data-parallel exchange between ranks that the host runs just before section ``before``.

    ``allreduce_mean``: each rank's tensors are replaced by their mean over the ranks (the
    gradients, between the backward and the optimizer sections). ``broadcast``: rank 0's tensors
    replace every rank's (buffers a section updates, such as batch-norm running statistics, as
    torch's DistributedDataParallel does). With one rank a collective changes nothing.
    """

    op: Literal["allreduce_mean", "broadcast"]
    before: str
    symbols: list[int]


class NonPersistentBuffer(Payload, frozen=True):
    """A buffer the model registers with ``persistent=False`` (BERT's ``token_type_ids``,
    Llama's rotary ``inv_freq``): not in its ``state_dict``, so not in checkpoints either. The
    host takes its value from the model at run time; the PEF keeps only the digest of the value
    it was compiled for (``runtime.pef.digest.value_sha256``), so a run with other values is
    refused. ``sha256`` is empty for a buffer a section updates (its value is training state).
    """

    symbol: int
    sha256: str


class Meta(Payload, frozen=True):
    """The ``meta`` section: target, symbols and metadata about the compile."""

    target: Target
    inference: bool
    symbols: list[Symbol]
    model_name: str
    batch_size: int
    compiler_version: str
    compile_flags: list[str]
    source_hash: str
    optimizer: str
    loss: bool
    data_parallel: bool = False
    """Compiled with ``--data-parallel``: ``collectives`` say what the ranks exchange."""
    collectives: list[Collective] = []
    non_persistent: list[NonPersistentBuffer] = []
    """The buffer symbols whose values come from the model at run time, not from checkpoints."""

    def precision(self) -> str:
        """The precision the PEF was compiled in (``rdu-compile --precision``): its
        ``--precision=`` compile flag, or ``fp32`` without one."""
        for flag in self.compile_flags:
            if flag.startswith("--precision="):
                return flag.removeprefix("--precision=")
        return "fp32"


class WeightTensor(Payload, frozen=True):
    """The values of one parameter or buffer symbol: its elements in row-major order, little
    endian, of ``dtype`` (the symbol's own: bf16 in a ``--precision bf16`` PEF, two bytes an
    element, else f32), ``len(data) == numel(shape) * bytes(dtype)``."""

    symbol: int
    dtype: Dtype
    data: bytes


class Weights(Payload, frozen=True):
    """The ``weights`` section of an inference PEF compiled with ``rdu-compile --weights``:
    every parameter and persistent buffer symbol of the PEF, once each, so that
    ``rdu-run --inference`` needs no checkpoint. Non-persistent buffers are not here: they come
    from the model (``Meta.non_persistent``)."""

    source: str
    """Where the values came from (the checkpoint's file name), for ``rdu-pef``."""
    tensors: list[WeightTensor]


class Handoff(Payload, frozen=True):
    """An on-chip copy of a resident symbol from its home into the PMU of a section that reads
    it: before ``section`` runs, the home's PMUs stream the symbol into that section's PMU
    ``pmu`` (one loaded from DRAM under the symbol's name outside co-residency) along ``hops``
    (switches, from the home PMU's slot's switch to ``pmu``'s), instead of a DRAM load."""

    section: str
    pmu: int
    hops: list[list[int]]


class SharedPmu(Payload, frozen=True):
    """A PMU loaded from a resident symbol that sits on the home PMU's own slots: it reads the
    symbol where it lives, with no hand-off and no copy. In another section than the home's,
    its banks serve that section's ports besides the home's (the sections run chained: the
    performance model's rule 8 counts both on the slot). In the home's own
    section, it is the old value the home's writer updates in place (the optimizer's
    parameter, read by the update that writes the new one over it: every address is read
    before it is written, ``runtime.machine.rules.in_place_problem``)."""

    section: str
    pmu: int


class ResidentSymbol(Payload, frozen=True):
    """A DRAM symbol kept on chip across the co-resident sections and across steps: its value
    lives in the PMUs of its home, PMU ``pmu`` of section ``section`` (the PMU the last section
    of a step to write it stores from, or for a symbol no section writes the first one to load
    it). The first run loads it from DRAM once; a checkpoint reads it out of the home's PMUs
    (through the home's store route); no step moves it through DRAM. Every other PMU loaded
    from it is fed by a hand-off (``handoffs``) or sits on the home's slot (``shared``)."""

    symbol: int
    section: str
    pmu: int
    handoffs: list[Handoff] = []
    shared: list[SharedPmu] = []


class Residency(Payload, frozen=True):
    """The ``resident`` section of a PEF (container flag bit 2): the ``symbols`` are kept on
    chip (``ResidentSymbol``); every other symbol (the batch, the loss, the outputs, the
    hyperparameters) still crosses DRAM.

    ``co_resident`` (the default): every section of the program sits on the fabric at once, on
    units of its own (no PCU or PMU slot shared between two sections, but a resident symbol's
    ``shared`` PMUs), its routes and the hand-offs' routes within the links' capacity together,
    so the fabric is configured once per run, not once per section run, and the sections run
    chained, as one dataflow graph (the performance model's rule 8).

    Not ``co_resident``: the sections are configured one at a time, as without residency, but
    the symbols' homes are **pinned**: no unit sits on a home's slots but the home, its
    ``shared`` PMUs and PMUs of sections that neither load nor store the symbol and fit the
    PMU beside it (``runtime.machine.rules.beside_pinned_home``: they use its other
    addresses), so loading a section's configuration leaves them holding their symbols. A
    section's routes and the hand-offs into it fit the links' capacity together (the hand-offs
    run after it is loaded, before it starts)."""

    symbols: list[ResidentSymbol]
    co_resident: bool = True
    """(A ``resident`` section written before this field, a one-element array, decodes as
    co-resident.)"""


class Program(msgspec.Struct, frozen=True):
    """A whole PEF, decoded: meta plus sections in run order, and the embedded weights of an
    inference PEF that has them (the container's ``weights`` section, last; else None)."""

    meta: Meta
    sections: list[Section]
    weights: Weights | None = None
    resident: Residency | None = None
    """The container's ``resident`` section: the sections are co-resident (``Residency``)."""
