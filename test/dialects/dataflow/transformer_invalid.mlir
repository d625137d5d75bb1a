// RUN: rdu-opt %s --verify-diagnostics --split-input-file | filecheck %s

// A gather's result is the table with the gathered dim replaced by the index shape.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["w", "i"], arg_roles = [#dataflow<role parameter>, #dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%w: tensor<11x5xf32>, %i: tensor<3xi64>):
    %e = dataflow.take %w, %i dim 0 : (tensor<11x5xf32>, tensor<3xi64>) -> tensor<3x4xf32>
    dataflow.yield
  }
}

// CHECK: take result: shape [3, 4] should be [3, 5]

// -----

// A slice stays inside its input.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["w"], arg_roles = [#dataflow<role parameter>], result_names = [], result_roles = []} {
  ^bb0(%w: tensor<11x5xf32>):
    %v = dataflow.extract_slice %w offsets [8, 0] steps [2, 1] : (tensor<11x5xf32>) -> tensor<3x5xf32>
    dataflow.yield
  }
}

// CHECK: extract_slice: dim 0: 3 elements from 8 by 2 do not fit extent 11

// -----

// An indexed access names another operand as its index.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["w", "i"], arg_roles = [#dataflow<role parameter>, #dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%w: tensor<11x5xf32>, %i: tensor<3xi64>):
    %e = rdu_tile.kernel (%w, %i) space [3, 5] tile [3, 5] ins [#rdu_tile.access<0 : [0, 1] + 5 * ins[0] of 11>, #rdu_tile.access<0 : [1, 0]>] out #rdu_tile.access<0 : [5, 1]> combiner none : (tensor<11x5xf32>, tensor<3xi64>) -> tensor<3x5xf32> {
    ^bb0(%x: f32, %j: i64):
      rdu_tile.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: rdu_tile.kernel: ins[0] access is indexed by ins[0], which must be another operand with an affine access
