// RUN: rdu-opt %s --split-input-file --verify-diagnostics -p 'fuse-elementwise{target=plasticine}' | filecheck %s

// A chain scale * x + bias -> exp -> sum folds into the reduction; a negation read transposed
// folds into its consumer (the strides compose); a cast read twice by one kernel is inlined
// twice and its operand merged; the iota that the cast reads flattened (a reshape merging its
// dims) does not compose and stays.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["input.0", "p.scale", "p.bias"], arg_roles = [#dataflow<role input>, #dataflow<role parameter>, #dataflow<role parameter>], result_names = ["output.0", "output.1", "output.2"], result_roles = [#dataflow<role output>, #dataflow<role output>, #dataflow<role output>]} {
  ^bb0(%x: tensor<4x8xf32>, %s: tensor<f32>, %b: tensor<8xf32>):
    %m = rdu_tile.kernel @mul_0 (%s, %x) space [4, 8] tile [4, 8] ins [#rdu_tile.access<0 : [0, 0]>, #rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (tensor<f32>, tensor<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%0: f32, %1: f32):
      %2 = arith.mulf %0, %1 : f32
      rdu_tile.yield %2 : f32
    } loc("model.py":1:0)
    %a = rdu_tile.kernel @add_1 (%m, %b) space [4, 8] tile [4, 8] ins [#rdu_tile.access<0 : [8, 1]>, #rdu_tile.access<0 : [0, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32> {
    ^bb0(%0: f32, %1: f32):
      %2 = arith.addf %0, %1 : f32
      rdu_tile.yield %2 : f32
    } loc("model.py":2:0)
    %e = rdu_tile.kernel @exp_2 (%a) space [4, 8] tile [4, 8] ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (tensor<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%0: f32):
      %1 = math.exp %0 : f32
      rdu_tile.yield %1 : f32
    } loc("model.py":3:0)
    %se = rdu_tile.kernel @sum_3 (%e) space [4, 8] tile [4, 8] ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [1, 0]> combiner add : (tensor<4x8xf32>) -> tensor<4xf32> {
    ^bb0(%0: f32):
      rdu_tile.yield %0 : f32
    } loc("model.py":4:0)
    %t = rdu_tile.kernel @neg_4 (%x) space [4, 8] tile [4, 8] ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (tensor<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%0: f32):
      %1 = arith.negf %0 : f32
      rdu_tile.yield %1 : f32
    } loc("model.py":5:0)
    %u = rdu_tile.kernel @abs_5 (%t) space [8, 4] tile [8, 4] ins [#rdu_tile.access<0 : [1, 8]>] out #rdu_tile.access<0 : [4, 1]> combiner none : (tensor<4x8xf32>) -> tensor<8x4xf32> {
    ^bb0(%0: f32):
      %1 = math.absf %0 : f32
      rdu_tile.yield %1 : f32
    } loc("model.py":6:0)
    %i = rdu_tile.kernel @iota_6 () space [4, 8] tile [4, 8] ins [] out #rdu_tile.access<0 : [8, 1]> combiner none : () -> tensor<4x8xi64> {
      %0 = rdu_tile.index 1 : i64
      rdu_tile.yield %0 : i64
    } loc("model.py":7:0)
    %c = rdu_tile.kernel @cast_7 (%i) space [32] tile [32] ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (tensor<4x8xi64>) -> tensor<32xf32> {
    ^bb0(%0: i64):
      %1 = arith.sitofp %0 : i64 to f32
      rdu_tile.yield %1 : f32
    } loc("model.py":8:0)
    %d = rdu_tile.kernel @add_8 (%c, %c) space [32] tile [32] ins [#rdu_tile.access<0 : [1]>, #rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (tensor<32xf32>, tensor<32xf32>) -> tensor<32xf32> {
    ^bb0(%0: f32, %1: f32):
      %2 = arith.addf %0, %1 : f32
      rdu_tile.yield %2 : f32
    } loc("model.py":9:0)
    dataflow.yield %se, %u, %d : tensor<4xf32>, tensor<8x4xf32>, tensor<32xf32>
  }
}

// CHECK:      ^bb0(%x: tensor<4x8xf32>, %s: tensor<f32>, %b: tensor<8xf32>):
// CHECK-NEXT:   %se = rdu_tile.kernel @sum_3 (%s, %x, %b) space [4, 8] tile [4, 8] ins [#rdu_tile.access<0 : [0, 0]>, #rdu_tile.access<0 : [8, 1]>, #rdu_tile.access<0 : [0, 1]>] out #rdu_tile.access<0 : [1, 0]> combiner add : (tensor<f32>, tensor<4x8xf32>, tensor<8xf32>) -> tensor<4xf32> {
// CHECK-NEXT:   ^bb0(%0: f32, %1: f32, %2: f32):
// CHECK-NEXT:     %3 = arith.mulf %0, %1 : f32
// CHECK-NEXT:     %4 = arith.addf %3, %2 : f32
// CHECK-NEXT:     %5 = math.exp %4 : f32
// CHECK-NEXT:     rdu_tile.yield %5 : f32
// CHECK-NEXT:   }
// CHECK-NEXT:   %u = rdu_tile.kernel @abs_5 (%x) space [8, 4] tile [8, 4] ins [#rdu_tile.access<0 : [1, 8]>] out #rdu_tile.access<0 : [4, 1]> combiner none : (tensor<4x8xf32>) -> tensor<8x4xf32> {
// CHECK-NEXT:   ^bb0(%0: f32):
// CHECK-NEXT:     %1 = arith.negf %0 : f32
// CHECK-NEXT:     %2 = math.absf %1 : f32
// CHECK-NEXT:     rdu_tile.yield %2 : f32
// CHECK-NEXT:   }
// CHECK-NEXT:   %i = rdu_tile.kernel @iota_6 () space [4, 8]
// CHECK:        %d = rdu_tile.kernel @add_8 (%i) space [32] tile [32] ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (tensor<4x8xi64>) -> tensor<32xf32> {
// CHECK-NEXT:   ^bb0(%0: i64):
// CHECK-NEXT:     %1 = arith.sitofp %0 : i64 to f32
// CHECK-NEXT:     %2 = arith.sitofp %0 : i64 to f32
// CHECK-NEXT:     %3 = arith.addf %2, %1 : f32
// CHECK-NEXT:     rdu_tile.yield %3 : f32
// CHECK-NEXT:   }
// CHECK-NEXT:   dataflow.yield %se, %u, %d : tensor<4xf32>, tensor<8x4xf32>, tensor<32xf32>

// -----

// An iota read at every other element from the second (offset 1, stride 2) fuses: its counter
// becomes 1 + 2 * the reader's counter. A kernel whose result is yielded, or read by two
// kernels, is not fused.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["input.0"], arg_roles = [#dataflow<role input>], result_names = ["output.0", "output.1", "output.2", "output.3", "output.4"], result_roles = [#dataflow<role output>, #dataflow<role output>, #dataflow<role output>, #dataflow<role output>, #dataflow<role output>]} {
  ^bb0(%x: tensor<4x8xf32>):
    %i = rdu_tile.kernel @iota_0 () space [4, 8] tile [4, 8] ins [] out #rdu_tile.access<0 : [8, 1]> combiner none : () -> tensor<4x8xi64> {
      %0 = rdu_tile.index 1 : i64
      rdu_tile.yield %0 : i64
    }
    %c = rdu_tile.kernel @cast_1 (%i) space [4, 4] tile [4, 4] ins [#rdu_tile.access<1 : [8, 2]>] out #rdu_tile.access<0 : [4, 1]> combiner none : (tensor<4x8xi64>) -> tensor<4x4xf32> {
    ^bb0(%0: i64):
      %1 = arith.sitofp %0 : i64 to f32
      rdu_tile.yield %1 : f32
    }
    %n = rdu_tile.kernel @neg_2 (%x) space [4, 8] tile [4, 8] ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (tensor<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%0: f32):
      %1 = arith.negf %0 : f32
      rdu_tile.yield %1 : f32
    }
    %e = rdu_tile.kernel @exp_3 (%n) space [4, 8] tile [4, 8] ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (tensor<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%0: f32):
      %1 = math.exp %0 : f32
      rdu_tile.yield %1 : f32
    }
    %l = rdu_tile.kernel @log_4 (%n) space [4, 8] tile [4, 8] ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (tensor<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%0: f32):
      %1 = math.log %0 : f32
      rdu_tile.yield %1 : f32
    }
    %a = rdu_tile.kernel @abs_5 (%x) space [4, 8] tile [4, 8] ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (tensor<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%0: f32):
      %1 = math.absf %0 : f32
      rdu_tile.yield %1 : f32
    }
    %s = rdu_tile.kernel @sqrt_6 (%a) space [4, 8] tile [4, 8] ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (tensor<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%0: f32):
      %1 = math.sqrt %0 : f32
      rdu_tile.yield %1 : f32
    }
    dataflow.yield %c, %e, %l, %a, %s : tensor<4x4xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>
  }
}

// CHECK:      %c = rdu_tile.kernel @cast_1 () space [4, 4] tile [4, 4] ins [] out #rdu_tile.access<0 : [4, 1]> combiner none : () -> tensor<4x4xf32> {
// CHECK-NEXT:   %0 = rdu_tile.index 1 : i64
// CHECK-NEXT:   %1 = arith.constant 2 : i64
// CHECK-NEXT:   %2 = arith.muli %0, %1 : i64
// CHECK-NEXT:   %3 = arith.constant 1 : i64
// CHECK-NEXT:   %4 = arith.addi %2, %3 : i64
// CHECK-NEXT:   %5 = arith.sitofp %4 : i64 to f32
// CHECK-NEXT:   rdu_tile.yield %5 : f32
// CHECK-NEXT: }
// CHECK-NEXT: %n = rdu_tile.kernel @neg_2 (%x)
// CHECK:      %e = rdu_tile.kernel @exp_3 (%n)
// CHECK:      %l = rdu_tile.kernel @log_4 (%n)
// CHECK:      %a = rdu_tile.kernel @abs_5 (%x)
// CHECK:      %s = rdu_tile.kernel @sqrt_6 (%a)

// -----

// A matmul reads its left operand once a column of its result (its counter 1 walks none of
// the operand's dims): a three-operand (x - m) * s (a normalisation) stays a kernel of its own,
// as fused it would run and stream its operands once a column; a two-operand bias and ReLU
// fuses.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["input.0", "p.m", "p.s", "p.bias", "p.w"], arg_roles = [#dataflow<role input>, #dataflow<role parameter>, #dataflow<role parameter>, #dataflow<role parameter>, #dataflow<role parameter>], result_names = ["output.0", "output.1"], result_roles = [#dataflow<role output>, #dataflow<role output>]} {
  ^bb0(%x: tensor<4x8xf32>, %m: tensor<4xf32>, %s: tensor<8xf32>, %b: tensor<8xf32>, %w: tensor<6x8xf32>):
    %a = rdu_tile.kernel @norm_0 (%x, %m, %s) space [4, 8] tile [4, 8] ins [#rdu_tile.access<0 : [8, 1]>, #rdu_tile.access<0 : [1, 0]>, #rdu_tile.access<0 : [0, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (tensor<4x8xf32>, tensor<4xf32>, tensor<8xf32>) -> tensor<4x8xf32> {
    ^bb0(%0: f32, %1: f32, %2: f32):
      %3 = arith.subf %0, %1 : f32
      %4 = arith.mulf %3, %2 : f32
      rdu_tile.yield %4 : f32
    }
    %mm = rdu_tile.kernel @matmul_1 (%a, %w) space [4, 6, 8] tile [4, 6, 8] ins [#rdu_tile.access<0 : [8, 0, 1]>, #rdu_tile.access<0 : [0, 8, 1]>] out #rdu_tile.access<0 : [6, 1, 0]> combiner add : (tensor<4x8xf32>, tensor<6x8xf32>) -> tensor<4x6xf32> {
    ^bb0(%0: f32, %1: f32):
      %2 = arith.mulf %0, %1 : f32
      rdu_tile.yield %2 : f32
    }
    %r = rdu_tile.kernel @relu_2 (%x, %b) space [4, 8] tile [4, 8] ins [#rdu_tile.access<0 : [8, 1]>, #rdu_tile.access<0 : [0, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32> {
    ^bb0(%0: f32, %1: f32):
      %2 = arith.addf %0, %1 : f32
      %3 = arith.constant 0.0 : f32
      %4 = arith.maximumf %2, %3 : f32
      rdu_tile.yield %4 : f32
    }
    %n = rdu_tile.kernel @matmul_3 (%r, %w) space [4, 6, 8] tile [4, 6, 8] ins [#rdu_tile.access<0 : [8, 0, 1]>, #rdu_tile.access<0 : [0, 8, 1]>] out #rdu_tile.access<0 : [6, 1, 0]> combiner add : (tensor<4x8xf32>, tensor<6x8xf32>) -> tensor<4x6xf32> {
    ^bb0(%0: f32, %1: f32):
      %2 = arith.mulf %0, %1 : f32
      rdu_tile.yield %2 : f32
    }
    dataflow.yield %mm, %n : tensor<4x6xf32>, tensor<4x6xf32>
  }
}

// CHECK:      %a = rdu_tile.kernel @norm_0 (%x, %m, %s)
// CHECK:      %mm = rdu_tile.kernel @matmul_1 (%a, %w)
// CHECK:      %n = rdu_tile.kernel @matmul_3 (%x, %b, %w)
// CHECK:        arith.maximumf
