// RUN: rdu-opt %s --parsing-diagnostics --verify-diagnostics --split-input-file | filecheck %s

// One case per verifier message of the dataflow dialect.

builtin.module {
  dataflow.section @s sideways attributes {arg_names = [], arg_roles = [], result_names = [], result_roles = []} {
    dataflow.yield
  }
}

// CHECK: unknown section kind 'sideways' (expected one of forward, backward, optimizer)

// -----

builtin.module {
  dataflow.section @s forward attributes {arg_names = ["a"], arg_roles = [], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<f32>):
    dataflow.yield
  }
}

// CHECK: section @s: 1 block arguments but 1 arg_names and 0 arg_roles

// -----

builtin.module {
  dataflow.section @s forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<f32>):
    dataflow.yield %a : tensor<f32>
  }
}

// CHECK: section @s: yield has 1 operands but 0 result_names and 0 result_roles

// -----

builtin.module {
  dataflow.section @s forward attributes {arg_names = ["a", "a"], arg_roles = [#dataflow<role input>, #dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<f32>, %b: tensor<f32>):
    dataflow.yield
  }
}

// CHECK: section @s: duplicate name 'a' in arg_names

// -----

builtin.module {
  dataflow.section @s forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role weights>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<f32>):
    dataflow.yield
  }
}

// CHECK: unknown role 'weights' (expected one of input, label, parameter,

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<f32>
  dataflow.yield %0 : tensor<f32>
}

// CHECK: 'dataflow.yield' must be the terminator of a 'dataflow.section'

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4xf32>
  %1 = dataflow.matmul %0, %0 : (tensor<4xf32>, tensor<4xf32>) -> tensor<f32>
}

// CHECK: matmul operands must have equal rank >= 2, got [4] and [4]

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<2x4x8xf32>
  %1 = dataflow.fill 1.0 : tensor<3x8x5xf32>
  %2 = dataflow.matmul %0, %1 : (tensor<2x4x8xf32>, tensor<3x8x5xf32>) -> tensor<2x4x5xf32>
}

// CHECK: matmul batch dims differ: [2] vs [3]

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4x8xf32>
  %1 = dataflow.fill 1.0 : tensor<7x5xf32>
  %2 = dataflow.matmul %0, %1 : (tensor<4x8xf32>, tensor<7x5xf32>) -> tensor<4x5xf32>
}

// CHECK: matmul contraction dims differ: lhs [4, 8] has K=8, rhs [7, 5] has K=7

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4x8xf32>
  %1 = dataflow.fill 1.0 : tensor<8x5xf32>
  %2 = dataflow.matmul %0, %1 : (tensor<4x8xf32>, tensor<8x5xf32>) -> tensor<4x4xf32>
}

// CHECK: matmul result shape [4, 4] should be [4, 5]

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4x8xf32>
  %1 = dataflow.fill 1 : tensor<8x5xi64>
  %2 = dataflow.matmul %0, %1 : (tensor<4x8xf32>, tensor<8x5xi64>) -> tensor<4x5xf32>
}

// CHECK: matmul element types must match, got f32, i64 -> f32

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<?x8xf32>
}

// CHECK: fill result must have a static shape, got tensor<?x8xf32>

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4xf32>
  %1 = dataflow.pointwise frobnicate(%0) : (tensor<4xf32>) -> tensor<4xf32>
}

// CHECK: unknown pointwise kind 'frobnicate' (expected one of exp, log,

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4xf32>
  %1 = dataflow.pointwise add(%0) : (tensor<4xf32>) -> tensor<4xf32>
}

// CHECK: pointwise 'add' takes 2 operand(s), got 1

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4xf32>
  %1 = dataflow.fill 1.0 : tensor<3xf32>
  %2 = dataflow.pointwise add(%0, %1) : (tensor<4xf32>, tensor<3xf32>) -> tensor<4xf32>
}

// CHECK: pointwise 'add': operand shapes [4], [3] do not broadcast

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4xf32>
  %1 = dataflow.fill 1.0 : tensor<2x1xf32>
  %2 = dataflow.pointwise mul(%0, %1) : (tensor<4xf32>, tensor<2x1xf32>) -> tensor<4xf32>
}

// CHECK: pointwise 'mul': operands broadcast to [2, 4] but the result is [4]

// -----

builtin.module {
  %0 = dataflow.fill 1 : tensor<4xi1>
  %1 = dataflow.fill 1.0 : tensor<4xf32>
  %2 = dataflow.pointwise and(%0, %1) : (tensor<4xi1>, tensor<4xf32>) -> tensor<4xi1>
}

// CHECK: pointwise 'and' (i1, f32) -> i1 is ill-typed: needs i1 or i64 operands of the result dtype

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4xf32>
  %1 = dataflow.pointwise select(%0, %0, %0) : (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
}

// CHECK: pointwise 'select' (f32, f32, f32) -> f32 is ill-typed: needs an i1 condition and two operands of the result dtype

// -----

builtin.module {
  %0 = dataflow.fill 1 : tensor<4xi1>
  %1 = dataflow.fill 1.0 : tensor<4xf32>
  %2 = dataflow.fill 1 : tensor<4xi64>
  %3 = dataflow.pointwise select(%0, %1, %2) : (tensor<4xi1>, tensor<4xf32>, tensor<4xi64>) -> tensor<4xf32>
}

// CHECK: pointwise 'select' (i1, f32, i64) -> f32 is ill-typed: needs an i1 condition and two operands of the result dtype

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4xf32>
  %1 = dataflow.fill 1 : tensor<4xi64>
  %2 = dataflow.pointwise add(%0, %1) : (tensor<4xf32>, tensor<4xi64>) -> tensor<4xf32>
}

// CHECK: pointwise 'add' (f32, i64) -> f32 is ill-typed: needs operands of the result dtype, one of f32/bf16/i64/i1

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4xf32>
  %1 = dataflow.pointwise lt(%0, %0) : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
}

// CHECK: pointwise 'lt' (f32, f32) -> f32 is ill-typed: needs two operands of one dtype and an i1 result

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4xf32>
  %1 = dataflow.pointwise neg(%0) : (tensor<4xf32>) -> tensor<4xi64>
}

// CHECK: pointwise 'neg' (f32) -> i64 is ill-typed: needs operands of the result dtype, one of f32/bf16/i64

// -----

builtin.module {
  %0 = dataflow.fill 1 : tensor<4xi64>
  %1 = dataflow.pointwise exp(%0) : (tensor<4xi64>) -> tensor<4xi64>
}

// CHECK: pointwise 'exp' (i64) -> i64 is ill-typed: needs float (f32/bf16) operands of the result dtype

// -----

builtin.module {
  %0 = dataflow.fill 1 : tensor<4xi64>
  %1 = dataflow.pointwise cos(%0) : (tensor<4xi64>) -> tensor<4xi64>
}

// CHECK: pointwise 'cos' (i64) -> i64 is ill-typed: needs float (f32/bf16) operands of the result dtype

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4x5xf32>
  %1 = dataflow.reduce mean %0 dims [1] : (tensor<4x5xf32>) -> tensor<4xf32>
}

// CHECK: unknown reduce kind 'mean' (expected one of sum, max, min)

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4x5xf32>
  %1 = dataflow.reduce sum %0 dims [2] : (tensor<4x5xf32>) -> tensor<4xf32>
}

// CHECK: reduce dims [2] must be distinct and in [0, 2)

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4x5xf32>
  %1 = dataflow.reduce sum %0 dims [1] : (tensor<4x5xf32>) -> tensor<5xf32>
}

// CHECK: reduce result shape [5] should be [4] (dims dropped) or [4, 1] (dims kept)

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4x5xf32>
  %1 = dataflow.reduce max %0 dims [1] : (tensor<4x5xf32>) -> tensor<4xi64>
}

// CHECK: reduce element types differ: f32 -> i64

// -----

builtin.module {
  %0 = dataflow.fill 1.5 : tensor<4xi64>
}

// CHECK: fill with a float value needs a float element type, got i64

// -----

builtin.module {
  %0 = dataflow.fill 2 : tensor<4xi1>
}

// CHECK: fill of an i1 tensor takes 0 or 1, got 2

// -----

builtin.module {
  %0 = dataflow.iota dim 2 : tensor<4x5xi64>
}

// CHECK: iota dim 2 out of range for a rank-2 result

// -----

builtin.module {
  %0 = dataflow.iota dim 0 : tensor<4xi1>
}

// CHECK: iota needs an integer or float element type, got i1

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4x5xf32>
  %1 = dataflow.transpose %0 perm [0, 0] : (tensor<4x5xf32>) -> tensor<4x4xf32>
}

// CHECK: transpose perm [0, 0] is not a permutation of rank 2

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4x5xf32>
  %1 = dataflow.transpose %0 perm [1, 0] : (tensor<4x5xf32>) -> tensor<4x5xf32>
}

// CHECK: transpose result shape [4, 5] should be [5, 4]

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4x5xf32>
  %1 = dataflow.reshape %0 : (tensor<4x5xf32>) -> tensor<21xf32>
}

// CHECK: reshape changes the element count: [4, 5] -> [21]

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4x5xf32>
  %1 = dataflow.broadcast %0 : (tensor<4x5xf32>) -> tensor<3x5xf32>
}

// CHECK: cannot broadcast [4, 5] to [3, 5]

// -----

builtin.module {
  %0 = dataflow.fill 1.0 : tensor<5xf32>
  %1 = dataflow.broadcast %0 : (tensor<5xf32>) -> tensor<3x5xi64>
}

// CHECK: broadcast must keep the element type
