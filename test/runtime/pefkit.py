"""Hand-built PEF programs for the runtime tests (no compiler involved).

``ProgramBuilder`` places units on a grid in order and routes every stream with an L-shaped path,
so the programs it builds pass ``validate``; tests then break one thing on purpose.
"""

from __future__ import annotations

import math
from typing import Literal, TypeVar, cast

import msgspec

from runtime.machine.opcodes import DTYPE_BYTES
from runtime.pef import schema

S = TypeVar("S", bound=msgspec.Struct)

TARGET = schema.Target(
    name="test",
    cols=16,
    rows=16,
    pcu_lanes=16,
    pcu_stages=6,
    pmu_bytes=256 * 1024,
    pmu_banks=16,
    clock_ghz=1.0,
    link_capacity=64,
)


def row_major(shape: list[int]) -> list[int]:
    """Row-major strides (in elements) of ``shape``."""
    strides, acc = [], 1
    for dim in reversed(shape):
        strides.append(acc)
        acc *= dim
    return strides[::-1]


def st(
    op: str, *args: int, dtype: schema.Dtype = "f32", imm: float | int | None = None
) -> schema.Stage:
    """A stage."""
    return schema.Stage(op=op, args=list(args), dtype=dtype, imm=imm)


class SectionBuilder:
    def __init__(self, program: ProgramBuilder, name: str, kind: schema.SectionKind) -> None:
        self.program = program
        self.name = name
        self.kind: schema.SectionKind = kind
        self.inputs: list[int] = []
        self.outputs: list[schema.Output] = []
        self.pmus: list[schema.Pmu] = []
        self.pcus: list[schema.Pcu] = []
        self.streams: list[tuple[tuple[str, int], tuple[str, int]]] = []
        self._slot = 0

    def _at(self) -> list[int]:
        slot = self._slot
        self._slot += 1
        cols = self.program.target.cols
        return [slot % cols, (slot // cols) % self.program.target.rows]

    def _pmu(
        self,
        name: str,
        shape: list[int],
        dtype: schema.Dtype,
        source: Literal["dram", "pcu"],
        symbol: int = -1,
        producer: int = -1,
    ) -> int:
        nbytes = math.prod(shape) * DTYPE_BYTES[dtype]
        self.pmus.append(
            schema.Pmu(
                name=name,
                at=self._at(),
                shape=list(shape),
                dtype=dtype,
                tile_bytes=min(max(nbytes, 1), 4096),
                nbuf=2,
                banks=4,
                source=source,
                symbol=symbol,
                producer=producer,
            )
        )
        return len(self.pmus) - 1

    def load(self, symbol: str) -> int:
        """A PMU loaded from DRAM symbol ``symbol`` (added to the section's inputs)."""
        index = self.program.index(symbol)
        sym = self.program.symbols[index]
        if index not in self.inputs:
            self.inputs.append(index)
        pmu = self._pmu(sym.name, sym.shape, sym.dtype, source="dram", symbol=index)
        self.streams.append((("dram", index), ("pmu", pmu)))
        return pmu

    def pcu(
        self,
        name: str,
        space: list[int],
        inputs: list[tuple[int, int, list[int]]],
        stages: list[schema.Stage],
        out_shape: list[int],
        out: tuple[int, list[int]] | None = None,
        *,
        result: int | None = None,
        combiner: schema.Combiner = "none",
        dtype: schema.Dtype = "f32",
        into: int | None = None,
        out_index: tuple[int, int, int] | None = None,
    ) -> int:
        """A PCU writing a new PMU of ``out_shape`` (or the existing PMU ``into``); returns that
        PMU. ``inputs``: (pmu, offset, strides). ``out`` defaults to row-major over the leading
        counters; ``out_index`` (port, stride, limit) makes it a scatter."""
        index = len(self.pcus)
        if out is None:
            out = (0, row_major(out_shape) + [0] * (len(space) - len(out_shape)))
        if into is None:
            pmu = self._pmu(name + ".out", out_shape, dtype, source="pcu", producer=index)
        else:
            pmu = into
        self.pcus.append(
            schema.Pcu(
                name=name,
                loc=f'loc("model.py":{10 + index}:0)',
                at=self._at(),
                space=list(space),
                tile=[1] * (len(space) - 1) + [min(space[-1], 16) or 1] if space else [],
                lanes=16,
                inputs=[
                    schema.Port(pmu=p, access=schema.Access(offset=o, strides=list(s)))
                    for p, o, s in inputs
                ],
                stages=list(stages),
                result=len(inputs) + len(stages) - 1 if result is None else result,
                out_pmu=pmu,
                out=schema.Access(
                    offset=out[0],
                    strides=list(out[1]),
                    index_port=out_index[0] if out_index else -1,
                    index_stride=out_index[1] if out_index else 0,
                    index_limit=out_index[2] if out_index else 0,
                ),
                combiner=combiner,
                dtype=dtype,
            )
        )
        for p, _, _ in inputs:
            self.streams.append((("pmu", p), ("pcu", index)))
        self.streams.append((("pcu", index), ("pmu", pmu)))
        return pmu

    def store(self, symbol: str, pmu: int) -> None:
        index = self.program.index(symbol)
        self.outputs.append(schema.Output(symbol=index, pmu=pmu))
        self.streams.append((("pmu", pmu), ("dram", index)))

    def _position(self, end: tuple[str, int], other: tuple[str, int]) -> list[int]:
        """The switch of an endpoint: a unit's slot; DRAM: the left edge of the other's row."""
        kind, index = end
        if kind == "dram":
            return [0, self._position(other, end)[1]]
        return (self.pcus if kind == "pcu" else self.pmus)[index].at

    def build(self) -> schema.Section:
        routes = []
        for src, dst in self.streams:
            (x0, y0), (x1, y1) = self._position(src, dst), self._position(dst, src)
            hops = [[x0, y0]]
            x, y = x0, y0
            while x != x1:
                x += 1 if x1 > x else -1
                hops.append([x, y])
            while y != y1:
                y += 1 if y1 > y else -1
                hops.append([x, y])
            routes.append(schema.Route(src=src, dst=dst, hops=hops))
        return schema.Section(
            name=self.name,
            kind=self.kind,
            inputs=self.inputs,
            outputs=self.outputs,
            pmus=self.pmus,
            pcus=self.pcus,
            routes=routes,
        )


class ProgramBuilder:
    def __init__(self, *, inference: bool = False, target: schema.Target = TARGET) -> None:
        self.inference = inference
        self.target = target
        self.symbols: list[schema.Symbol] = []
        self.sections: list[SectionBuilder] = []

    def symbol(
        self,
        name: str,
        shape: list[int],
        dtype: schema.Dtype = "f32",
        role: schema.Role = "input",
    ) -> int:
        self.symbols.append(schema.Symbol(name=name, shape=list(shape), dtype=dtype, role=role))
        return len(self.symbols) - 1

    def index(self, name: str) -> int:
        return next(i for i, s in enumerate(self.symbols) if s.name == name)

    def section(self, name: str, kind: schema.SectionKind | None = None) -> SectionBuilder:
        section = SectionBuilder(self, name, kind or cast(schema.SectionKind, name))
        self.sections.append(section)
        return section

    def build(self, **meta: object) -> schema.Program:
        """The program; ``meta`` overrides fields of its ``Meta``."""
        fields = schema.Meta(
            target=self.target,
            inference=self.inference,
            symbols=self.symbols,
            model_name="test",
            batch_size=1,
            compiler_version="test",
            compile_flags=[],
            source_hash="0" * 16,
            optimizer="sgd",
            loss=not self.inference,
        )
        return schema.Program(
            meta=msgspec.structs.replace(fields, **meta),
            sections=[s.build() for s in self.sections],
        )


def replace(struct: S, **changes: object) -> S:
    """A copy of a frozen struct with some fields changed."""
    return msgspec.structs.replace(struct, **changes)


def matmul_program(
    m: int, k: int, n: int, *, transpose_b: bool = False, dtype: schema.Dtype = "f32"
) -> schema.Program:
    """forward: out = a @ b (or a @ b.T stored as [n, k]) as one PCU over space [m, n, k], every
    tensor of ``dtype``."""
    p = ProgramBuilder(inference=True)
    p.symbol("a", [m, k], dtype)
    p.symbol("b", [n, k] if transpose_b else [k, n], dtype)
    p.symbol("out", [m, n], dtype, role="output")
    s = p.section("forward")
    a, b = s.load("a"), s.load("b")
    b_strides = [0, k, 1] if transpose_b else [0, 1, n]
    out = s.pcu(
        "matmul",
        [m, n, k],
        [(a, 0, [k, 0, 1]), (b, 0, b_strides)],
        [st("mul", 0, 1, dtype=dtype)],
        [m, n],
        (0, [n, 1, 0]),
        combiner="add",
        dtype=dtype,
    )
    s.store("out", out)
    return p.build()


def parallel_matmul_program(m: int, k: int, n: int) -> schema.Program:
    """``matmul_program`` with its PCU made parallel ``[2, 2, 1]``: four copies, copy ``c`` at
    slot ``[3 + c, 0]`` (copy 0 at the PCU's own slot), row-major over the factors (copy
    ``2 * i + j`` runs rows block ``i`` and columns block ``j``). ``a`` is multicast to the
    copies of each row block (copies 0, 1 and 2, 3), ``b`` to those of each column block
    (0, 2 and 1, 3); each copy's output goes back along row 0 to the out PMU at ``[2, 0]``."""
    program = matmul_program(m, k, n)
    section = program.sections[0]
    (pcu,) = section.pcus
    assert pcu.at == [3, 0] and [p.at for p in section.pmus] == [[0, 0], [1, 0], [2, 0]]
    pcu = replace(pcu, parallel=[2, 2, 1], more_at=[[4, 0], [5, 0], [6, 0]])

    def along(x0: int, x1: int) -> list[list[int]]:
        step = 1 if x1 >= x0 else -1
        return [[x, 0] for x in range(x0, x1 + step, step)]

    routes = [r for r in section.routes if "pcu" not in (r.src[0], r.dst[0])]
    for pmu, groups in ((0, [[0, 1], [2, 3]]), (1, [[0, 2], [1, 3]])):
        for copies in groups:
            routes.append(
                schema.Route(
                    src=("pmu", pmu),
                    dst=("pcu", 0),
                    hops=along(pmu, 3 + max(copies)),
                    taps=[[0, c] for c in copies],
                )
            )
    for c in range(4):
        routes.append(
            schema.Route(src=("pcu", 0), dst=("pmu", 2), hops=along(3 + c, 2), taps=[[0, c]])
        )
    section = replace(section, pcus=[pcu], routes=routes)
    return replace(program, sections=[section])


def broadcast_strides(shape: list[int], out_shape: list[int]) -> list[int]:
    """Strides reading a row-major ``shape`` tensor broadcast (numpy rules) to ``out_shape``."""
    own = row_major(shape)
    pad = len(out_shape) - len(shape)
    return [0] * pad + [0 if d == 1 else s for d, s in zip(shape, own, strict=True)]


def elementwise(
    s: SectionBuilder,
    name: str,
    out_shape: list[int],
    inputs: list[tuple[int, list[int]]],
    stages: list[schema.Stage],
    *,
    dtype: schema.Dtype = "f32",
) -> int:
    """A PCU over ``out_shape`` reading each (pmu, shape) input broadcast to it."""
    ports = [(pmu, 0, broadcast_strides(shape, out_shape)) for pmu, shape in inputs]
    return s.pcu(name, list(out_shape), ports, stages, list(out_shape), dtype=dtype)


SGD_HYPER = ("lr", "momentum", "weight_decay", "dampening")
ADAMW_HYPER = ("lr", "beta1", "beta2", "eps", "weight_decay")


def linear_program(batch: int, k: int, n: int, optimizer: str | None = "sgd") -> schema.Program:
    """``torch.nn.Linear(k, n, bias=False)`` trained on ``mse_loss`` by hand-built sections.

    ``optimizer=None`` gives the inference PEF (forward yields ``output.0`` only).
    """
    b_, k_, n_ = batch, k, n
    p = ProgramBuilder(inference=optimizer is None)
    p.symbol("weight", [n_, k_], role="parameter")
    p.symbol("input.0", [b_, k_])
    p.symbol("output.0", [b_, n_], role="output")
    fwd = p.section("forward")
    x, w = fwd.load("input.0"), fwd.load("weight")
    y = fwd.pcu(
        "linear",
        [b_, n_, k_],
        [(x, 0, [k_, 0, 1]), (w, 0, [0, k_, 1])],
        [st("mul", 0, 1)],
        [b_, n_],
        (0, [n_, 1, 0]),
        combiner="add",
    )
    fwd.store("output.0", y)
    if optimizer is None:
        return p.build(optimizer="none", loss=False)

    p.symbol("target.0", [b_, n_], role="label")
    p.symbol("loss", [], role="loss")
    p.symbol("saved.diff", [b_, n_], role="activation")
    p.symbol("weight.grad", [n_, k_], role="gradient")
    t = fwd.load("target.0")
    d = elementwise(fwd, "diff", [b_, n_], [(y, [b_, n_]), (t, [b_, n_])], [st("sub", 0, 1)])
    ss = fwd.pcu(
        "sumsq", [b_, n_], [(d, 0, [n_, 1])], [st("mul", 0, 0)], [], (0, [0, 0]), combiner="add"
    )
    loss = fwd.pcu(
        "mean", [], [(ss, 0, [])], [st("const", imm=float(b_ * n_)), st("div", 0, 1)], []
    )
    fwd.store("loss", loss)
    fwd.store("saved.diff", d)

    bwd = p.section("backward")
    x2, d2 = bwd.load("input.0"), bwd.load("saved.diff")
    scale = 2.0 / (b_ * n_)
    g = elementwise(
        bwd, "dloss", [b_, n_], [(d2, [b_, n_])], [st("const", imm=scale), st("mul", 0, 1)]
    )
    grad = bwd.pcu(
        "dweight",
        [n_, k_, b_],
        [(g, 0, [1, 0, n_]), (x2, 0, [0, 1, k_])],
        [st("mul", 0, 1)],
        [n_, k_],
        (0, [k_, 1, 0]),
        combiner="add",
    )
    bwd.store("weight.grad", grad)

    opt = p.section("optimizer")
    shape = [n_, k_]
    if optimizer == "sgd":
        p.symbol("weight.momentum_buffer", shape, role="optimizer_state")
        for h in SGD_HYPER:
            p.symbol(h, [], role="hyperparameter")
        w3, g3, buf = (
            opt.load("weight"),
            opt.load("weight.grad"),
            opt.load("weight.momentum_buffer"),
        )
        lr, mom, wd, damp = (opt.load(h) for h in SGD_HYPER)
        # dp = g + wd * w; buf = mom * buf + (1 - damp) * dp
        new_buf = elementwise(
            opt,
            "momentum",
            shape,
            [(w3, shape), (g3, shape), (buf, shape), (mom, []), (wd, []), (damp, [])],
            [
                st("mul", 4, 0),  # 6 wd * w
                st("add", 1, 6),  # 7 dp
                st("mul", 3, 2),  # 8 mom * buf
                st("const", imm=1.0),  # 9
                st("sub", 9, 5),  # 10 1 - damp
                st("mul", 10, 7),  # 11
                st("add", 8, 11),  # 12
            ],
        )
        new_w = elementwise(
            opt,
            "update",
            shape,
            [(w3, shape), (new_buf, shape), (lr, [])],
            [st("mul", 2, 1), st("sub", 0, 3)],
        )
        opt.store("weight", new_w)
        opt.store("weight.momentum_buffer", new_buf)
        return p.build(optimizer="sgd")

    p.symbol("weight.exp_avg", shape, role="optimizer_state")
    p.symbol("weight.exp_avg_sq", shape, role="optimizer_state")
    for h in (*ADAMW_HYPER, "bias_correction1", "bias_correction2_sqrt"):
        p.symbol(h, [], role="hyperparameter")
    w3, g3 = opt.load("weight"), opt.load("weight.grad")
    m, v = opt.load("weight.exp_avg"), opt.load("weight.exp_avg_sq")
    lr, b1, b2, eps, wd, bc1, bc2 = (
        opt.load(h) for h in (*ADAMW_HYPER, "bias_correction1", "bias_correction2_sqrt")
    )
    one = st("const", imm=1.0)
    new_m = elementwise(  # m + (1 - b1) * (g - m)
        opt,
        "exp_avg",
        shape,
        [(m, shape), (g3, shape), (b1, [])],
        [one, st("sub", 3, 2), st("sub", 1, 0), st("mul", 4, 5), st("add", 0, 6)],
    )
    new_v = elementwise(  # b2 * v + (1 - b2) * g * g
        opt,
        "exp_avg_sq",
        shape,
        [(v, shape), (g3, shape), (b2, [])],
        [st("mul", 2, 0), one, st("sub", 4, 2), st("mul", 1, 1), st("mul", 5, 6), st("add", 3, 7)],
    )
    new_w = elementwise(  # w * (1 - lr * wd) - (lr / bc1) * m / (sqrt(v) / bc2 + eps)
        opt,
        "adamw",
        shape,
        [
            (w3, shape),
            (new_m, shape),
            (new_v, shape),
            (lr, []),
            (wd, []),
            (bc1, []),
            (bc2, []),
            (eps, []),
        ],
        [
            one,  # 8
            st("mul", 3, 4),  # 9 lr * wd
            st("sub", 8, 9),  # 10
            st("mul", 0, 10),  # 11 decayed w
            st("sqrt", 2),  # 12
            st("div", 12, 6),  # 13
            st("add", 13, 7),  # 14 denom
            st("div", 3, 5),  # 15 step size
            st("mul", 15, 1),  # 16
            st("div", 16, 14),  # 17
            st("sub", 11, 17),  # 18
        ],
    )
    opt.store("weight", new_w)
    opt.store("weight.exp_avg", new_m)
    opt.store("weight.exp_avg_sq", new_v)
    return p.build(optimizer="adamw")


def co_resident_relus(
    *,
    with_resident: bool = True,
    second_at: int = 8,
    shared: bool = False,
    third_at: int | None = None,
) -> schema.Program:
    """Two forward sections on units of their own: ``h = relu(x)`` then ``y = relu(h)``, with
    ``h`` (an activation) kept on chip: its home is the first section's output PMU (slot
    (1, 0)), a hand-off copies it into the second section's PMU (slot (8, 0)) along 7 hops.
    ``second_at``: the column of the second section's first unit. ``shared``: the second
    section's h PMU sits on the home's slot instead (``schema.SharedPmu``), its routes
    redrawn from there, and no hand-off. ``third_at``: a third section, ``z = relu(x)``, which
    binds nothing to ``h``, its first unit (the x PMU) at that column."""
    p = ProgramBuilder(inference=True)
    p.symbol("x", [64, 16])
    p.symbol("h", [64, 16], role="activation")
    p.symbol("y", [64, 16], role="output")
    if third_at is not None:
        p.symbol("z", [64, 16], role="output")
    zero = st("const", imm=0.0)
    first = p.section("forward")
    h = first.pcu("relu", [64, 16], [(first.load("x"), 0, [16, 1])],
                  [zero, st("max", 0, 1)], [64, 16])  # fmt: skip
    first.store("h", h)
    second = p.section("forward.1", "forward")
    second._slot = second_at  # units of its own
    y = second.pcu("relu2", [64, 16], [(second.load("h"), 0, [16, 1])],
                   [zero, st("max", 0, 1)], [64, 16])  # fmt: skip
    second.store("y", y)
    if third_at is not None:
        third = p.section("forward.2", "forward")
        third._slot = third_at
        z = third.pcu("relu3", [64, 16], [(third.load("x"), 0, [16, 1])],
                      [zero, st("max", 0, 1)], [64, 16])  # fmt: skip
        third.store("z", z)
    program = p.build()
    if not with_resident:
        return program
    if shared:
        second_section = program.sections[1]
        home = program.sections[0].pmus[1].at
        pmus = [replace(second_section.pmus[0], at=list(home)), *second_section.pmus[1:]]
        routes = []
        for r in second_section.routes:
            if r.dst == ("pmu", 0):  # the load: from DRAM at the left edge of the home's row
                r = replace(r, hops=[[x, home[1]] for x in range(0, home[0] + 1)])
            elif r.src == ("pmu", 0):  # into relu2, along row 0
                end = second_section.pcus[0].at
                r = replace(r, hops=[[x, 0] for x in range(home[0], end[0] + 1)])
            routes.append(r)
        program = replace(
            program,
            sections=[program.sections[0], replace(second_section, pmus=pmus, routes=routes)],
        )
        entry = schema.ResidentSymbol(
            symbol=1, section="forward", pmu=1, shared=[schema.SharedPmu("forward.1", 0)]
        )
        return replace(program, resident=schema.Residency(symbols=[entry]))
    hops = [[x, 0] for x in range(1, second_at + 1)]
    handoff = schema.Handoff(section="forward.1", pmu=0, hops=hops)
    entry = schema.ResidentSymbol(symbol=1, section="forward", pmu=1, handoffs=[handoff])
    return replace(program, resident=schema.Residency(symbols=[entry]))


def chained_overwrite(*, shared: bool = False) -> schema.Program:
    """Two co-resident sections, the second overwriting what the first reads: ``y = relu(w)``,
    then ``w = -x``, with ``w`` (a parameter) kept on chip, its home the second section's
    output PMU. The first section reads ``w`` from a hand-off along row 0 from the home's
    column to its PMU's, or (``shared``) from a PMU on the home's slot."""
    p = ProgramBuilder(inference=True)
    p.symbol("w", [64, 16], role="parameter")
    p.symbol("x", [64, 16])
    p.symbol("y", [64, 16], role="output")
    first = p.section("forward")
    old = first.load("w")
    y = first.pcu("relu", [64, 16], [(old, 0, [16, 1])], [st("const", imm=0.0),
                  st("max", 0, 1)], [64, 16])  # fmt: skip
    first.store("y", y)
    second = p.section("forward.1", "forward")
    second._slot = 8  # units of its own
    new = second.pcu("neg", [64, 16], [(second.load("x"), 0, [16, 1])], [st("neg", 0)],
                     [64, 16])  # fmt: skip
    second.store("w", new)
    program = p.build()
    home = program.sections[1].pmus[new].at
    if shared:
        pmus = [
            replace(program.sections[0].pmus[old], at=list(home)),
            *program.sections[0].pmus[1:],
        ]
        program = replace(program, sections=[replace(program.sections[0], pmus=pmus),
                                             program.sections[1]])  # fmt: skip
        entry = schema.ResidentSymbol(
            symbol=0, section="forward.1", pmu=new, shared=[schema.SharedPmu("forward", old)]
        )
    else:
        at = program.sections[0].pmus[old].at
        hops = [[x, 0] for x in range(home[0], at[0] - 1, -1)]
        handoff = schema.Handoff(section="forward", pmu=old, hops=hops)
        entry = schema.ResidentSymbol(symbol=0, section="forward.1", pmu=new, handoffs=[handoff])
    return replace(program, resident=schema.Residency(symbols=[entry]))


def in_place_update(*, transposed: bool = False) -> schema.Program:
    """One section updating ``w`` (an activation kept on chip) in place: ``decay = w + g``,
    then ``update = w - decay`` written into ``w``'s home (its output PMU, slot (4, 0)), the
    load of the old ``w`` (PMU 0) on the home's slot (``schema.SharedPmu`` in the home's own
    section). ``transposed``: the update reads the old ``w`` transposed, not where it writes."""
    p = ProgramBuilder(inference=True)
    p.symbol("w", [16, 16], role="activation")
    p.symbol("g", [16, 16])
    s = p.section("forward")
    old, g = s.load("w"), s.load("g")
    rows = [16, 1]
    decay = s.pcu("decay", [16, 16], [(old, 0, rows), (g, 0, rows)], [st("add", 0, 1)], [16, 16])
    read = [1, 16] if transposed else rows
    new = s.pcu("update", [16, 16], [(old, 0, read), (decay, 0, rows)], [st("sub", 0, 1)],
                [16, 16])  # fmt: skip
    s.store("w", new)
    s.pmus[old] = replace(s.pmus[old], at=list(s.pmus[new].at))
    program = p.build()
    entry = schema.ResidentSymbol(
        symbol=0, section="forward", pmu=new, shared=[schema.SharedPmu("forward", old)]
    )
    return replace(program, resident=schema.Residency(symbols=[entry]))
