// RUN: rdu-opt %s --parsing-diagnostics --verify-diagnostics --split-input-file | filecheck %s

// Unknown opcodes are refused.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %u = pcu.unit @u (%ap) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (memref<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%x: f32):
      %r = pcu.stage fma(%x, %x) : (f32, f32) -> f32
      pcu.yield %r : f32
    }
    dataflow.yield
  }
}

// CHECK: unknown opcode 'fma' (expected one of exp, log,

// -----

// Arity is checked.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %u = pcu.unit @u (%ap) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (memref<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%x: f32):
      %r = pcu.stage add(%x) : (f32) -> f32
      pcu.yield %r : f32
    }
    dataflow.yield
  }
}

// CHECK: pcu.stage add takes 2 operand(s), got 1

// -----

// Arity is checked (unary).
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %u = pcu.unit @u (%ap) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (memref<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%x: f32):
      %r = pcu.stage exp(%x, %x) : (f32, f32) -> f32
      pcu.yield %r : f32
    }
    dataflow.yield
  }
}

// CHECK: pcu.stage exp takes 1 operand(s), got 2

// -----

// Comparisons give i1.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %u = pcu.unit @u (%ap) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (memref<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%x: f32):
      %r = pcu.stage lt(%x, %x) : (f32, f32) -> f32
      pcu.yield %r : f32
    }
    dataflow.yield
  }
}

// CHECK: pcu.stage 'lt' (f32, f32) -> f32 is ill-typed: needs two operands of one dtype and an i1 result

// -----

// select needs an i1 condition.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %u = pcu.unit @u (%ap) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (memref<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%x: f32):
      %r = pcu.stage select(%x, %x, %x) : (f32, f32, f32) -> f32
      pcu.yield %r : f32
    }
    dataflow.yield
  }
}

// CHECK: pcu.stage 'select' (f32, f32, f32) -> f32 is ill-typed: needs an i1 condition and two operands of the result dtype

// -----

// Transcendental opcodes need floats.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %u = pcu.unit @u (%ap) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (memref<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%x: f32):
      %c = pcu.counter 0 : i64
      %r = pcu.stage exp(%c) : (i64) -> i64
      pcu.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: pcu.stage 'exp' (i64) -> i64 is ill-typed: needs float (f32/bf16) operands of the result dtype

// -----

// So do cos and sin.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %u = pcu.unit @u (%ap) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (memref<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%x: f32):
      %c = pcu.counter 0 : i64
      %r = pcu.stage sin(%c) : (i64) -> i64
      pcu.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: pcu.stage 'sin' (i64) -> i64 is ill-typed: needs float (f32/bf16) operands of the result dtype

// -----

// Booleans are not negated: the emulator (numpy) cannot, so the PEF validator refuses it too.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %u = pcu.unit @u (%ap) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (memref<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%x: f32):
      %b = pcu.stage lt(%x, %x) : (f32, f32) -> i1
      %r = pcu.stage neg(%b) : (i1) -> i1
      pcu.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: pcu.stage 'neg' (i1) -> i1 is ill-typed: needs operands of the result dtype, one of f32/bf16/i64

// -----

// Counters exist.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %u = pcu.unit @u (%ap) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (memref<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%x: f32):
      %c = pcu.counter 2 : i64
      pcu.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: pcu.counter: counter 2 out of range, the unit's space has 2 counters

// -----

// A constant has its result's type.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %u = pcu.unit @u (%ap) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (memref<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%x: f32):
      %c = "pcu.const"() <{value = 1.0 : f64}> : () -> f32
      pcu.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: pcu.const: value type f64 differs from result type f32

// -----

// Only pcu ops in a unit body.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %u = pcu.unit @u (%ap) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (memref<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%x: f32):
      %r = arith.addf %x, %x : f32
      pcu.yield %r : f32
    }
    dataflow.yield
  }
}

// CHECK: pcu.unit @u: 'arith.addf' is not allowed in the body (only pcu ops)

// -----

// The body yields the result's element type.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %u = pcu.unit @u (%ap) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (memref<4x8xf32>) -> tensor<4x8xi1> {
    ^bb0(%x: f32):
      pcu.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: pcu.unit @u: body must yield one value of the result's element type i1, got (f32)

// -----

// Lanes are positive.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %u = pcu.unit @u (%ap) space [4, 8] tile [4, 8] lanes 0 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (memref<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%x: f32):
      pcu.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: pcu.unit @u: lanes must be >= 1, got 0

// -----

// Accesses are checked as in rdu_tile.kernel.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %u = pcu.unit @u (%ap) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<1 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (memref<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%x: f32):
      pcu.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: pcu.unit @u: ins[0] access #rdu_tile.access<1 : [8, 1]> reaches addresses [1, 32] over space [4, 8], outside its buffer of 32 elements (shape [4, 8])

// -----

// The combiner matches the reduction counters.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %u = pcu.unit @u (%ap) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [1, 0]> combiner none : (memref<4x8xf32>) -> tensor<4xf32> {
    ^bb0(%x: f32):
      pcu.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: pcu.unit @u: counters [1] have out stride 0 (a reduction) but the combiner is 'none'

// -----

// One route per input port. (A malformed placement attribute is refused by its parser:
// test/dialects/test_placement_attrs.py.)
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %u = pcu.unit @u (%ap) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none placed #pcu.placement<at (0, 0), routes [(0, 1) -> (0, 0), (1, 1)]> : (memref<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%x: f32):
      pcu.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: pcu.unit @u: 2 routes for 1 input ports

// -----

// A unit that is not parallel is one PCU.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %u = pcu.unit @u (%ap) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none placed #pcu.placement<at [(0, 0), (2, 0)], streams [port 0 to copies [0, 1] via (1, 0) -> (0, 0) -> (1, 0) -> (2, 0)], out_routes [(0, 0) -> (1, 0), (2, 0) -> (1, 0)]> : (memref<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%x: f32):
      pcu.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: pcu.unit @u: placed as a parallel unit (streams, out_routes), but not parallel

// -----

// A parallel unit has a slot and an out route a copy.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %u = pcu.unit @u (%ap) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none parallel [2, 1] placed #pcu.placement<at (0, 0), streams [port 0 to copies [0] via (1, 0) -> (0, 0)], out_routes [(0, 0) -> (1, 0)]> : (memref<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%x: f32):
      pcu.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: pcu.unit @u: parallel [2, 1] is 2 copies: its placement needs a slot, and an out route, a copy (got 1 slot(s), 1 out route(s))

// -----

// A parallel unit's streams feed its input ports.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %u = pcu.unit @u (%ap) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none parallel [2, 1] placed #pcu.placement<at [(0, 0), (2, 0)], streams [port 1 to copies [0, 1] via (1, 0) -> (0, 0) -> (1, 0) -> (2, 0)], out_routes [(0, 0) -> (1, 0), (2, 0) -> (1, 0)]> : (memref<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%x: f32):
      pcu.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: pcu.unit @u: a stream feeds port 1, the unit has 1 input ports

// -----

// Operands are pmu buffers.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %m = "test.op"() : () -> memref<4x8xf32>
    %u = pcu.unit @u (%m) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (memref<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%x: f32):
      pcu.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: pcu.unit @u: operands must be 'pmu.buffer' results, got a 'test.op' result
