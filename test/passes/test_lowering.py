# ruff: noqa: E501  (IR text in the tests is kept one op a line, as rdu-opt prints it)
"""The two lowering passes: dataflow -> rdu_tile -> pcu/pmu (accesses, tiles, names, errors)."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.parser import Parser
from xdsl.utils.exceptions import DiagnosticException

from compiler.driver import make_context
from compiler.passes.convert_dataflow_to_rdu_tile import (
    ConvertDataflowToRduTile,
    reshape_strides,
)
from compiler.passes.convert_rdu_tile_to_pcu_pmu import ConvertRduTileToPcuPmu
from compiler.passes.tiling import NBUF, choose_tile, element_bytes, tile_elements
from compiler.targets import get_target
from dialects.dataflow import SectionOp
from dialects.pcu import StageOp, UnitOp
from dialects.pmu import BufferOp
from dialects.rdu_tile import KernelOp


def linear_module(n: int, batch: int = 16, k: int = 64) -> str:
    """x[batch, k] @ w[k, n] + b, relu, log-softmax over n (w stored transposed, as torch does)."""
    return f"""
builtin.module {{
  dataflow.section @forward forward attributes {{arg_names = ["w", "b", "input.0"], arg_roles = [#dataflow<role parameter>, #dataflow<role parameter>, #dataflow<role input>], result_names = ["output.0", "w"], result_roles = [#dataflow<role output>, #dataflow<role parameter>]}} {{
  ^bb0(%w: tensor<{n}x{k}xf32>, %b: tensor<{n}xf32>, %x: tensor<{batch}x{k}xf32>):
    %wt = dataflow.transpose %w perm [1, 0] : (tensor<{n}x{k}xf32>) -> tensor<{k}x{n}xf32>
    %mm = dataflow.matmul %x, %wt : (tensor<{batch}x{k}xf32>, tensor<{k}x{n}xf32>) -> tensor<{batch}x{n}xf32> loc("model.py":3:0)
    %h = dataflow.pointwise add(%mm, %b) : (tensor<{batch}x{n}xf32>, tensor<{n}xf32>) -> tensor<{batch}x{n}xf32>
    %r = dataflow.pointwise relu(%h) : (tensor<{batch}x{n}xf32>) -> tensor<{batch}x{n}xf32>
    %m = dataflow.reduce max %r dims [1] : (tensor<{batch}x{n}xf32>) -> tensor<{batch}x1xf32>
    %s = dataflow.pointwise sub(%r, %m) : (tensor<{batch}x{n}xf32>, tensor<{batch}x1xf32>) -> tensor<{batch}x{n}xf32>
    %e = dataflow.pointwise exp(%s) : (tensor<{batch}x{n}xf32>) -> tensor<{batch}x{n}xf32>
    %se = dataflow.reduce sum %e dims [1] : (tensor<{batch}x{n}xf32>) -> tensor<{batch}xf32>
    %l = dataflow.pointwise log(%se) : (tensor<{batch}xf32>) -> tensor<{batch}xf32>
    %l2 = dataflow.reshape %l : (tensor<{batch}xf32>) -> tensor<{batch}x1xf32>
    %o = dataflow.pointwise sub(%s, %l2) : (tensor<{batch}x{n}xf32>, tensor<{batch}x1xf32>) -> tensor<{batch}x{n}xf32>
    dataflow.yield %o, %w : tensor<{batch}x{n}xf32>, tensor<{n}x{k}xf32>
  }}
}}
"""


def matmul_module(m: int, k: int, n: int) -> str:
    return f"""
builtin.module {{
  dataflow.section @forward forward attributes {{arg_names = ["a", "b"], arg_roles = [#dataflow<role input>, #dataflow<role parameter>], result_names = ["output.0"], result_roles = [#dataflow<role output>]}} {{
  ^bb0(%a: tensor<{m}x{k}xf32>, %b: tensor<{k}x{n}xf32>):
    %c = dataflow.matmul %a, %b : (tensor<{m}x{k}xf32>, tensor<{k}x{n}xf32>) -> tensor<{m}x{n}xf32>
    dataflow.yield %c : tensor<{m}x{n}xf32>
  }}
}}
"""


def parse(ctx: Context, text: str) -> ModuleOp:
    module = Parser(ctx, text).parse_module()
    module.verify()
    return module


def lower(text: str, target: str = "plasticine", *, to_units: bool = True) -> ModuleOp:
    ctx = make_context()
    module = parse(ctx, text)
    ConvertDataflowToRduTile(target=target).apply(ctx, module)
    module.verify()
    if to_units:
        ConvertRduTileToPcuPmu(target=target).apply(ctx, module)
        module.verify()
    return module


def ops_of(module: ModuleOp, kind: type) -> list:
    return [op for op in module.walk() if isinstance(op, kind)]


def test_matmul_accesses() -> None:
    module = lower(matmul_module(16, 64, 128), to_units=False)
    (kernel,) = ops_of(module, KernelOp)
    assert kernel.space_values == (16, 128, 64)  # M, N, K
    assert [a.stride_values for a in kernel.ins.data] == [(64, 0, 1), (0, 1, 128)]
    assert kernel.out.stride_values == (128, 1, 0)
    assert kernel.combiner.data == "add"
    assert kernel.sym_name is not None and kernel.sym_name.data == "matmul_0"


def test_transposed_weight_folds_into_strides() -> None:
    module = lower(linear_module(128), to_units=False)
    kernels = ops_of(module, KernelOp)
    matmul = kernels[0]
    # w is [n, k] row-major; walking (m, n, k) over its transpose reads w[n, k] at 64*n + k.
    assert [a.stride_values for a in matmul.ins.data] == [(64, 0, 1), (0, 64, 1)]
    section = module.body.block.first_op
    assert isinstance(section, SectionOp)
    assert matmul.inputs[1] is section.body.block.args[0]
    add = kernels[1]
    assert add.ins.data[1].stride_values == (0, 1)  # the bias broadcasts over rows
    assert str(matmul.location) == 'loc("model.py":3:0)'
    assert not [op for op in module.walk() if op.name.startswith("dataflow.") and op.name not in (
        "dataflow.section", "dataflow.yield")]  # fmt: skip


def test_widening_does_not_grow_the_ir() -> None:
    narrow = lower(linear_module(128))
    wide = lower(linear_module(4096))
    assert len(list(narrow.walk())) == len(list(wide.walk()))
    narrow_units = [u.space_values for u in ops_of(narrow, UnitOp)]
    wide_units = [u.space_values for u in ops_of(wide, UnitOp)]
    assert narrow_units[0] == (16, 128, 64) and wide_units[0] == (16, 4096, 64)


@pytest.mark.parametrize("target_name", ["plasticine", "tiny"])
@pytest.mark.parametrize("n", [128, 4096])
def test_tiles_fit_the_target(target_name: str, n: int) -> None:
    target = get_target(target_name)
    module = lower(linear_module(n), target_name, to_units=False)
    for kernel in ops_of(module, KernelOp):
        tile = kernel.tile_values
        space = kernel.space_values
        total = sum(
            tile_elements(a.stride_values, tile) * element_bytes(v.type.element_type)
            for a, v in zip(kernel.ins.data, kernel.inputs, strict=True)
        )
        total += tile_elements(kernel.out.stride_values, tile) * element_bytes(
            kernel.result.type.element_type
        )
        assert total * NBUF <= target.pmu_bytes, (kernel.sym_name, tile)
        out = kernel.out.stride_values
        lanes_counter = max(c for c in range(len(space)) if not (out[c] == 0 and space[c] > 1))
        t = tile[lanes_counter]
        assert t == space[lanes_counter] or t % target.pcu_lanes == 0


def test_choose_tile_grows_while_it_fits() -> None:
    plasticine = get_target("plasticine")
    accesses = [((64, 0, 1), "f32"), ((0, 1, 128), "f32"), ((128, 1, 0), "f32")]
    assert choose_tile([16, 128, 64], accesses, (128, 1, 0), plasticine) == [16, 128, 64]
    big = [((4096, 0, 1), "f32"), ((0, 1, 4096), "f32"), ((4096, 1, 0), "f32")]
    tile = choose_tile([1024, 4096, 4096], big, (4096, 1, 0), plasticine)
    assert tile[1] % plasticine.pcu_lanes == 0
    assert sum(tile_elements(s, tile) * 4 for s, _ in big) * NBUF <= plasticine.pmu_bytes
    assert all(t > 1 for t in tile)


def test_reshape_strides() -> None:
    assert reshape_strides([4, 6], [6, 1], [24]) == (1,)
    assert reshape_strides([4, 6], [6, 1], [2, 2, 6]) == (12, 6, 1)
    assert reshape_strides([16], [1], [16, 1]) == (1, 0)
    assert reshape_strides([6, 4], [1, 6], [24]) is None  # a transpose is not contiguous
    assert reshape_strides([6, 4], [1, 6], [6, 2, 2]) == (1, 12, 6)  # splitting a dim is fine
    assert reshape_strides([3, 4], [0, 1], [12]) is None  # a broadcast row repeats


def test_units_buffers_and_names() -> None:
    module = lower(linear_module(128))
    buffers = {b.buffer_name.data: b for b in ops_of(module, BufferOp)}
    units = ops_of(module, UnitOp)
    assert [u.sym_name.data for u in units] == [
        "matmul_0", "add_1", "relu_2", "max_3", "sub_4", "exp_5", "sum_6", "log_7", "sub_8"
    ]  # fmt: skip
    assert {"w", "b", "input.0"} <= set(buffers)
    assert all(buffers[u.sym_name.data].source is u.result for u in units)
    assert all(u.lanes.value.data == 16 for u in units)
    section = module.body.block.first_op
    assert isinstance(section, SectionOp)
    yielded = section.yield_op.values
    assert yielded[0] is buffers["sub_8"].result
    assert yielded[1] is buffers["w"].result  # the weight passes through its PMU
    relu = units[2]
    assert [op.opcode.data for op in relu.body.block.ops if isinstance(op, StageOp)] == ["max"]
    assert str(units[0].location) == 'loc("model.py":3:0)'


def test_unsupported_op_points_at_its_line() -> None:
    text = """
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["x"], arg_roles = [#dataflow<role input>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
  ^bb0(%x: tensor<4xf32>):
    %y = "test.op"(%x) : (tensor<4xf32>) -> tensor<4xf32> loc("model.py":7:0)
    dataflow.yield %y : tensor<4xf32>
  }
}
"""
    ctx = make_context()
    ctx.allow_unregistered = True
    module = parse(ctx, text)
    with pytest.raises(DiagnosticException, match=r"^model.py:7: 'test.op' cannot be lowered"):
        ConvertDataflowToRduTile().apply(ctx, module)


def test_lowered_views_compute_what_numpy_does() -> None:
    """The accesses the passes choose, run on the emulated fabric, give numpy's answers."""
    fabric_mod = pytest.importorskip("runtime.fabric")
    emit_pef = pytest.importorskip("compiler.passes.emit_pef")
    from compiler.passes.place_and_route import PlaceAndRoute

    text = """
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a", "q", "k"], arg_roles = [#dataflow<role input>, #dataflow<role input>, #dataflow<role input>], result_names = ["o1", "o2", "o3", "o4", "o5"], result_roles = [#dataflow<role output>, #dataflow<role output>, #dataflow<role output>, #dataflow<role output>, #dataflow<role output>]} {
  ^bb0(%a: tensor<4x6xf32>, %q: tensor<2x3x5xf32>, %k: tensor<2x5x7xf32>):
    %t = dataflow.transpose %a perm [1, 0] : (tensor<4x6xf32>) -> tensor<6x4xf32>
    %r = dataflow.reshape %t : (tensor<6x4xf32>) -> tensor<24xf32>
    %n = dataflow.pointwise neg(%r) : (tensor<24xf32>) -> tensor<24xf32>
    %r2 = dataflow.reshape %a : (tensor<4x6xf32>) -> tensor<2x2x6xf32>
    %bm = dataflow.matmul %q, %k : (tensor<2x3x5xf32>, tensor<2x5x7xf32>) -> tensor<2x3x7xf32>
    %i = dataflow.iota dim 1 : tensor<4x6xi64>
    %f = dataflow.fill 2.5 : tensor<f32>
    %c = dataflow.pointwise cast(%i) : (tensor<4x6xi64>) -> tensor<4x6xf32>
    %g = dataflow.pointwise gt(%c, %f) : (tensor<4x6xf32>, tensor<f32>) -> tensor<4x6xi1>
    %ng = dataflow.pointwise not(%g) : (tensor<4x6xi1>) -> tensor<4x6xi1>
    %s = dataflow.pointwise select(%ng, %a, %f) : (tensor<4x6xi1>, tensor<4x6xf32>, tensor<f32>) -> tensor<4x6xf32>
    %tot = dataflow.reduce sum %s dims [0, 1] : (tensor<4x6xf32>) -> tensor<f32>
    %b = dataflow.broadcast %tot : (tensor<f32>) -> tensor<3x4xf32>
    %ib = dataflow.pointwise cast(%g) : (tensor<4x6xi1>) -> tensor<4x6xi64>
    dataflow.yield %n, %r2, %bm, %b, %ib : tensor<24xf32>, tensor<2x2x6xf32>, tensor<2x3x7xf32>, tensor<3x4xf32>, tensor<4x6xi64>
  }
}
"""
    ctx = make_context()
    module = lower(text)
    PlaceAndRoute().apply(ctx, module)
    program = emit_pef.module_to_program(module, get_target("plasticine"))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 6)).astype(np.float32)
    q = rng.standard_normal((2, 3, 5)).astype(np.float32)
    k = rng.standard_normal((2, 5, 7)).astype(np.float32)
    dram = {"a": a, "q": q, "k": k}
    fabric_mod.Fabric(program).run_section("forward", dram)
    g = np.broadcast_to(np.arange(6), (4, 6)) > 2.5
    s = np.where(~g, a, np.float32(2.5))
    np.testing.assert_allclose(dram["o1"], -a.T.reshape(24))
    np.testing.assert_allclose(dram["o2"], a.reshape(2, 2, 6))
    np.testing.assert_allclose(dram["o3"], q @ k, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dram["o4"], np.full((3, 4), s.sum()), rtol=1e-5)
    np.testing.assert_array_equal(dram["o5"], g.astype(np.int64))
