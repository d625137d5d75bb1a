// RUN: rdu-opt %s -p convert-dataflow-to-rdu-tile | filecheck %s

// take: the table's access skips the index counters and adds 5 * (the value of ins[1]);
// put_add: the out access does, and values meeting at a row add up; random: the key is the
// seed plus stream << 32; a slice folds into the reader's access (offset 50, stride -10).

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["w", "input.0", "rng_seed"], arg_roles = [#dataflow<role parameter>, #dataflow<role input>, #dataflow<role hyperparameter>], result_names = ["output.0", "output.1", "output.2"], result_roles = [#dataflow<role output>, #dataflow<role output>, #dataflow<role output>]} {
  ^bb0(%w: tensor<11x5xf32>, %i: tensor<3x4xi64>, %s: tensor<i64>):
    %e = dataflow.take %w, %i dim 0 : (tensor<11x5xf32>, tensor<3x4xi64>) -> tensor<3x4x5xf32>
    %g = dataflow.put_add %e, %i dim 0 : (tensor<3x4x5xf32>, tensor<3x4xi64>) -> tensor<11x5xf32>
    %u = dataflow.random %s stream 1 : (tensor<i64>) -> tensor<3x4xf32>
    %v = dataflow.extract_slice %w offsets [10, 0] steps [-2, 1] : (tensor<11x5xf32>) -> tensor<4x5xf32>
    %n = dataflow.pointwise neg(%v) : (tensor<4x5xf32>) -> tensor<4x5xf32>
    dataflow.yield %g, %u, %n : tensor<11x5xf32>, tensor<3x4xf32>, tensor<4x5xf32>
  }
}

// CHECK:      rdu_tile.kernel @take_0 (%{{.*}}, %{{.*}}) space [3, 4, 5] tile [3, 4, 5] ins [#rdu_tile.access<0 : [0, 0, 1] + 5 * ins[1] of 11>, #rdu_tile.access<0 : [4, 1, 0]>] out #rdu_tile.access<0 : [20, 5, 1]> combiner none
// CHECK:      rdu_tile.kernel @put_add_1 (%{{.*}}, %{{.*}}) space [3, 4, 5] tile [3, 4, 5] ins [#rdu_tile.access<0 : [20, 5, 1]>, #rdu_tile.access<0 : [4, 1, 0]>] out #rdu_tile.access<0 : [0, 0, 1] + 5 * ins[1] of 11> combiner add
// CHECK:      rdu_tile.kernel @random_2 (%{{.*}}) space [3, 4]
// CHECK:        %{{.*}} = arith.constant 4294967296 : i64
// CHECK-NEXT:   %{{.*}} = arith.addi %{{.*}}, %{{.*}} : i64
// CHECK-NEXT:   %{{.*}} = rdu_tile.random %{{.*}} : f32
// CHECK:      rdu_tile.kernel @neg_3 (%{{.*}}) space [4, 5] tile [4, 5] ins [#rdu_tile.access<50 : [-10, 1]>]
