"""emit-pef and module_to_program: the PEF of a placed module decodes to what its IR says."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from xdsl.context import Context
from xdsl.dialects.arith import Arith
from xdsl.dialects.builtin import Builtin, ModuleOp, StringAttr
from xdsl.dialects.math import Math
from xdsl.parser import Parser
from xdsl.utils.exceptions import PassFailedException

from compiler.passes.convert_dataflow_to_rdu_tile import ConvertDataflowToRduTile
from compiler.passes.convert_rdu_tile_to_pcu_pmu import ConvertRduTileToPcuPmu
from compiler.passes.emit_pef import EmitPef, module_to_program
from compiler.passes.place_and_route import PlaceAndRoute
from compiler.targets import get_target
from dialects import all_dialects
from runtime.pef import encode_pef, read_pef, schema

PLACED = Path(__file__).with_name("emit_pef.mlir")
"""A placed training module (forward, backward, optimizer) on tiny; its lit test pins the text."""

TINY = get_target("tiny")


def context() -> Context:
    ctx = Context()
    for dialect in (Builtin, Arith, Math):
        ctx.load_dialect(dialect)
    for name, factory in all_dialects().items():
        ctx.register_dialect(name, factory)
    return ctx


def parse(text: str) -> ModuleOp:
    module = Parser(context(), text).parse_module()
    module.verify()
    return module


def placed() -> ModuleOp:
    return parse(PLACED.read_text())


def test_meta_from_module_attributes() -> None:
    meta = module_to_program(placed(), TINY).meta
    assert meta.target == TINY.to_pef()
    assert not meta.inference
    assert meta.loss  # a section yields a `loss` result
    assert (meta.model_name, meta.batch_size, meta.optimizer) == ("tiny_mlp", 2, "sgd")
    assert meta.compile_flags == ["--arch=tiny", "-b", "2"]
    assert (meta.source_hash, meta.compiler_version) == ("5eed", "0.1.0+test")
    assert [(s.name, s.shape, s.dtype, s.role) for s in meta.symbols] == [
        ("input.0", [2, 4], "f32", "input"),
        ("net.0.weight", [4, 4], "f32", "parameter"),
        ("target.0", [2, 4], "f32", "label"),
        ("output.0", [2, 4], "f32", "output"),
        ("saved.mm", [2, 4], "f32", "activation"),
        ("loss", [], "f32", "loss"),
        ("net.0.weight.grad", [4, 4], "f32", "gradient"),
        ("lr", [], "f32", "hyperparameter"),
    ]


def test_keyword_arguments_override_attributes() -> None:
    meta = module_to_program(
        placed(),
        TINY,
        model_name="other",
        batch_size=7,
        compiler_version="9",
        compile_flags=["--o0"],
        source_hash="ff",
        optimizer="adamw",
        loss=False,
    ).meta
    assert (meta.model_name, meta.batch_size, meta.compiler_version) == ("other", 7, "9")
    assert (meta.compile_flags, meta.source_hash, meta.optimizer, meta.loss) == (
        ["--o0"],
        "ff",
        "adamw",
        False,
    )


def test_sections_units_and_bindings() -> None:
    program = module_to_program(placed(), TINY)
    forward, backward, optimizer = program.sections
    assert [(s.name, s.kind) for s in program.sections] == [
        ("forward", "forward"),
        ("backward", "backward"),
        ("optimizer", "optimizer"),
    ]
    assert forward.inputs == [0, 1, 2]
    # matmul_0 (pmu 2) is yielded twice: output.0 and saved.mm.
    assert forward.outputs == [
        schema.Output(symbol=3, pmu=2),
        schema.Output(symbol=4, pmu=2),
        schema.Output(symbol=5, pmu=4),
    ]
    assert [(p.name, p.source, p.symbol, p.producer) for p in forward.pmus] == [
        ("input.0", "dram", 0, -1),
        ("net.0.weight", "dram", 1, -1),
        ("matmul_0", "pcu", -1, 0),
        ("target.0", "dram", 2, -1),
        ("mse_1", "pcu", -1, 1),
    ]
    matmul, mse = forward.pcus
    assert (matmul.name, matmul.loc, matmul.combiner, matmul.out_pmu) == (
        "matmul_0",
        "model.py:12",
        "add",
        2,
    )
    assert matmul.inputs == [
        schema.Port(pmu=0, access=schema.Access(offset=0, strides=[4, 0, 1])),
        schema.Port(pmu=1, access=schema.Access(offset=0, strides=[0, 1, 4])),
    ]
    assert (matmul.space, matmul.tile, matmul.lanes, matmul.dtype) == (
        [2, 4, 4],
        [2, 4, 4],
        4,
        "f32",
    )
    assert mse.loc == "model.py:20"  # the callee of a callsite location
    assert mse.out == schema.Access(offset=0, strides=[0, 0])
    assert optimizer.pcus[0].loc == ""  # no location

    # Inputs are values 0 and 1; stage i is value 2 + i.
    grad = backward.pcus[0]
    assert [(s.op, s.args, s.dtype, s.imm) for s in grad.stages] == [
        ("const", [], "f32", 2.0),
        ("sub", [0, 1], "f32", None),
        ("mul", [2, 3], "f32", None),
        ("counter", [], "i64", 0),
        ("const", [], "i64", 1),
        ("lt", [5, 6], "i1", None),
        ("const", [], "f32", 0.0),
        ("select", [7, 4, 8], "f32", None),
    ]
    assert grad.result == 9


def test_routes_join_the_units_they_name() -> None:
    program = module_to_program(placed(), TINY)
    for section in program.sections:
        streams = set()
        for route in section.routes:
            ends = []
            for kind, index in (route.src, route.dst):
                if kind == "pmu":
                    ends.append(section.pmus[index].at)
                elif kind == "pcu":
                    ends.append(section.pcus[index].at)
                else:
                    ends.append(None)
            other = ends[1] if ends[0] is None else ends[0]
            ends = [[0, other[1]] if e is None else e for e in ends]  # DRAM: left edge, same row
            assert route.hops[0] == ends[0] and route.hops[-1] == ends[1], route
            for a, b in zip(route.hops, route.hops[1:], strict=False):
                assert abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1
            streams.add((route.src, route.dst))
        # Every fill, every PCU port and every store has its route.
        for i, pmu in enumerate(section.pmus):
            src = ("dram", pmu.symbol) if pmu.source == "dram" else ("pcu", pmu.producer)
            assert (src, ("pmu", i)) in streams
        for j, pcu in enumerate(section.pcus):
            for port in pcu.inputs:
                assert (("pmu", port.pmu), ("pcu", j)) in streams
        stored = {out.pmu for out in section.outputs}
        assert {r.src[1] for r in section.routes if r.dst[0] == "dram"} == stored


def test_pass_writes_a_pef_that_decodes_to_the_program(tmp_path: Path) -> None:
    module = placed()
    before = str(module)
    out = tmp_path / "model.pef"
    EmitPef(output=str(out)).apply(context(), module)
    assert str(module) == before  # the IR is left alone
    assert read_pef(out) == module_to_program(module, TINY)
    # Typed decoding of the payloads, straight with msgspec.
    meta = msgspec.msgpack.decode(
        msgspec.msgpack.encode(module_to_program(module, TINY).meta), type=schema.Meta
    )
    assert meta.target.name == "tiny"


def test_byte_identical_output(tmp_path: Path) -> None:
    first, second = tmp_path / "a.pef", tmp_path / "b.pef"
    EmitPef(output=str(first)).apply(context(), placed())
    EmitPef(output=str(second)).apply(context(), placed())
    assert first.read_bytes() == second.read_bytes()
    assert encode_pef(module_to_program(placed(), TINY)) == first.read_bytes()


def test_target_must_match_the_placement(tmp_path: Path) -> None:
    with pytest.raises(PassFailedException, match="placed for target 'tiny', not 'plasticine'"):
        EmitPef(output=str(tmp_path / "x.pef"), target="plasticine").apply(context(), placed())
    assert not (tmp_path / "x.pef").exists()


FORWARD_ONLY = """
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["input.0", "w"], arg_roles = [#dataflow<role input>, #dataflow<role parameter>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
  ^bb0(%x: tensor<3x4xf32>, %w: tensor<4x2xf32>):
    %m = dataflow.matmul %x, %w : (tensor<3x4xf32>, tensor<4x2xf32>) -> tensor<3x2xf32> loc("model.py":5:0)
    %z = dataflow.fill 0.0 : tensor<f32>
    %r = dataflow.pointwise max(%m, %z) : (tensor<3x2xf32>, tensor<f32>) -> tensor<3x2xf32> loc("model.py":6:0)
    dataflow.yield %r : tensor<3x2xf32>
  }
}
"""  # noqa: E501


def test_whole_pipeline_from_dataflow(tmp_path: Path) -> None:
    """dataflow -> rdu_tile -> pcu/pmu -> placed -> PEF: the runtime's decoder accepts it."""
    module = parse(FORWARD_ONLY)
    ctx = context()
    for pass_ in (
        ConvertDataflowToRduTile(target="tiny"),
        ConvertRduTileToPcuPmu(target="tiny"),
        PlaceAndRoute(target="tiny"),
    ):
        pass_.apply(ctx, module)
        module.verify()
    assert module.attributes["rdu.target"] == StringAttr("tiny")
    out = tmp_path / "fwd.pef"
    EmitPef(output=str(out)).apply(ctx, module)
    program = read_pef(out)
    meta = program.meta
    assert meta.inference and not meta.loss
    assert (meta.model_name, meta.batch_size, meta.optimizer) == ("model", 3, "none")
    assert [s.name for s in meta.symbols] == ["input.0", "w", "output.0"]
    (forward,) = program.sections
    assert forward.pcus and all(pcu.at for pcu in forward.pcus)
    assert [out.symbol for out in forward.outputs] == [2]
    assert {pcu.loc for pcu in forward.pcus} <= {"model.py:5", "model.py:6", ""}


def test_every_scalar_operand_is_a_register_port() -> None:
    """A port reading one address at every point (``rules.register_problem``) is a register
    port, every other port a stream: the MLP's SGD step reads its hyperparameters (0-d
    tensors) as registers, its parameters and gradients as streams."""
    from compiler.driver import compile_in_memory
    from runtime.machine.rules import register_problem
    from tools.rdu_compile import model_spec

    target = get_target("sn10")
    root = Path(__file__).resolve().parents[2]
    _, spec = model_spec(str(root / "examples/mlp/model.py"), [], False, 8, 0, False, target)
    program = compile_in_memory(spec, inference=False, target=target)
    registers: set[str] = set()
    streams = 0
    for section in program.sections:
        for pcu in section.pcus:
            for port in pcu.inputs:
                allowed = register_problem(
                    pcu.space, port.access.strides, port.access.index_port >= 0
                )
                assert port.register == (allowed is None), (pcu.name, port)
                if port.register:
                    registers.add(section.pmus[port.pmu].name)
                else:
                    streams += 1
    assert {"lr", "momentum"} <= registers and streams > 10
