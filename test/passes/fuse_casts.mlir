// RUN: rdu-opt %s --split-input-file --verify-diagnostics -p 'fuse-casts{target=plasticine}' | filecheck %s

// A bf16-mixed linear layer: the rounding of the matmul's f32 result to bf16 becomes the
// matmul's own bf16 result (a bf16 multiply-accumulate: f32 accumulation, one rounding); the
// widening of that result for two f32 readers is inlined into each of them.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["x", "w"], arg_roles = [#dataflow<role input>, #dataflow<role parameter>], result_names = ["e", "n"], result_roles = [#dataflow<role output>, #dataflow<role output>]} {
  ^bb0(%x: tensor<4x8xbf16>, %w: tensor<2x8xbf16>):
    %mm = rdu_tile.kernel @matmul_0 (%x, %w) space [4, 2, 8] tile [4, 2, 8] ins [#rdu_tile.access<0 : [8, 0, 1]>, #rdu_tile.access<0 : [0, 8, 1]>] out #rdu_tile.access<0 : [2, 1, 0]> combiner add : (tensor<4x8xbf16>, tensor<2x8xbf16>) -> tensor<4x2xf32> {
    ^bb0(%0: bf16, %1: bf16):
      %2 = arith.extf %0 : bf16 to f32
      %3 = arith.extf %1 : bf16 to f32
      %4 = arith.mulf %2, %3 : f32
      rdu_tile.yield %4 : f32
    }
    %r = rdu_tile.kernel @cast_1 (%mm) space [4, 2] tile [4, 2] ins [#rdu_tile.access<0 : [2, 1]>] out #rdu_tile.access<0 : [2, 1]> combiner none : (tensor<4x2xf32>) -> tensor<4x2xbf16> {
    ^bb0(%0: f32):
      %1 = arith.truncf %0 : f32 to bf16
      rdu_tile.yield %1 : bf16
    }
    %f = rdu_tile.kernel @cast_2 (%r) space [4, 2] tile [4, 2] ins [#rdu_tile.access<0 : [2, 1]>] out #rdu_tile.access<0 : [2, 1]> combiner none : (tensor<4x2xbf16>) -> tensor<4x2xf32> {
    ^bb0(%0: bf16):
      %1 = arith.extf %0 : bf16 to f32
      rdu_tile.yield %1 : f32
    }
    %e = rdu_tile.kernel @exp_3 (%f) space [4, 2] tile [4, 2] ins [#rdu_tile.access<0 : [2, 1]>] out #rdu_tile.access<0 : [2, 1]> combiner none : (tensor<4x2xf32>) -> tensor<4x2xf32> {
    ^bb0(%0: f32):
      %1 = math.exp %0 : f32
      rdu_tile.yield %1 : f32
    }
    %n = rdu_tile.kernel @neg_4 (%f) space [2, 4] tile [2, 4] ins [#rdu_tile.access<0 : [1, 2]>] out #rdu_tile.access<0 : [4, 1]> combiner none : (tensor<4x2xf32>) -> tensor<2x4xf32> {
    ^bb0(%0: f32):
      %1 = arith.negf %0 : f32
      rdu_tile.yield %1 : f32
    }
    dataflow.yield %e, %n : tensor<4x2xf32>, tensor<2x4xf32>
  }
}

// CHECK:      ^bb0(%x: tensor<4x8xbf16>, %w: tensor<2x8xbf16>):
// CHECK-NEXT:   %r = rdu_tile.kernel @matmul_0 (%x, %w) space [4, 2, 8] tile [4, 2, 8] ins [#rdu_tile.access<0 : [8, 0, 1]>, #rdu_tile.access<0 : [0, 8, 1]>] out #rdu_tile.access<0 : [2, 1, 0]> combiner add : (tensor<4x8xbf16>, tensor<2x8xbf16>) -> tensor<4x2xbf16> {
// CHECK-NEXT:   ^bb0(%0: bf16, %1: bf16):
// CHECK-NEXT:     %2 = arith.mulf %0, %1 : bf16
// CHECK-NEXT:     rdu_tile.yield %2 : bf16
// CHECK-NEXT:   }
// CHECK-NEXT:   %e = rdu_tile.kernel @exp_3 (%r) space [4, 2] tile [4, 2] ins [#rdu_tile.access<0 : [2, 1]>] out #rdu_tile.access<0 : [2, 1]> combiner none : (tensor<4x2xbf16>) -> tensor<4x2xf32> {
// CHECK-NEXT:   ^bb0(%0: bf16):
// CHECK-NEXT:     %1 = arith.extf %0 : bf16 to f32
// CHECK-NEXT:     %2 = math.exp %1 : f32
// CHECK-NEXT:     rdu_tile.yield %2 : f32
// CHECK-NEXT:   }
// CHECK-NEXT:   %n = rdu_tile.kernel @neg_4 (%r) space [2, 4] tile [2, 4] ins [#rdu_tile.access<0 : [1, 2]>] out #rdu_tile.access<0 : [4, 1]> combiner none : (tensor<4x2xbf16>) -> tensor<2x4xf32> {
// CHECK-NEXT:   ^bb0(%0: bf16):
// CHECK-NEXT:     %1 = arith.extf %0 : bf16 to f32
// CHECK-NEXT:     %2 = arith.negf %1 : f32
// CHECK-NEXT:     rdu_tile.yield %2 : f32
// CHECK-NEXT:   }
// CHECK-NEXT:   dataflow.yield %e, %n : tensor<4x2xf32>, tensor<2x4xf32>

// -----

// Not fused: a rounding whose matmul result has another reader, and a widening the section
// yields (it needs its own f32 tensor).

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["x", "w"], arg_roles = [#dataflow<role input>, #dataflow<role parameter>], result_names = ["mm", "r", "f"], result_roles = [#dataflow<role output>, #dataflow<role output>, #dataflow<role output>]} {
  ^bb0(%x: tensor<4x8xbf16>, %w: tensor<2x8xbf16>):
    %mm = rdu_tile.kernel @matmul_0 (%x, %w) space [4, 2, 8] tile [4, 2, 8] ins [#rdu_tile.access<0 : [8, 0, 1]>, #rdu_tile.access<0 : [0, 8, 1]>] out #rdu_tile.access<0 : [2, 1, 0]> combiner add : (tensor<4x8xbf16>, tensor<2x8xbf16>) -> tensor<4x2xf32> {
    ^bb0(%0: bf16, %1: bf16):
      %2 = arith.extf %0 : bf16 to f32
      %3 = arith.extf %1 : bf16 to f32
      %4 = arith.mulf %2, %3 : f32
      rdu_tile.yield %4 : f32
    }
    %r = rdu_tile.kernel @cast_1 (%mm) space [4, 2] tile [4, 2] ins [#rdu_tile.access<0 : [2, 1]>] out #rdu_tile.access<0 : [2, 1]> combiner none : (tensor<4x2xf32>) -> tensor<4x2xbf16> {
    ^bb0(%0: f32):
      %1 = arith.truncf %0 : f32 to bf16
      rdu_tile.yield %1 : bf16
    }
    %f = rdu_tile.kernel @cast_2 (%r) space [4, 2] tile [4, 2] ins [#rdu_tile.access<0 : [2, 1]>] out #rdu_tile.access<0 : [2, 1]> combiner none : (tensor<4x2xbf16>) -> tensor<4x2xf32> {
    ^bb0(%0: bf16):
      %1 = arith.extf %0 : bf16 to f32
      rdu_tile.yield %1 : f32
    }
    dataflow.yield %mm, %r, %f : tensor<4x2xf32>, tensor<4x2xbf16>, tensor<4x2xf32>
  }
}

// CHECK:      %mm = rdu_tile.kernel @matmul_0
// CHECK:      %r = rdu_tile.kernel @cast_1 (%mm)
// CHECK:      %f = rdu_tile.kernel @cast_2 (%r)
// CHECK:      dataflow.yield %mm, %r, %f

// -----

// One widening of a value a kernel: x * x + x of a bf16 x, widened three times by inlining,
// is widened once.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["x"], arg_roles = [#dataflow<role input>], result_names = ["y"], result_roles = [#dataflow<role output>]} {
  ^bb0(%x: tensor<8xbf16>):
    %y = rdu_tile.kernel @add_0 (%x) space [8] tile [8] ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (tensor<8xbf16>) -> tensor<8xf32> {
    ^bb0(%0: bf16):
      %1 = arith.extf %0 : bf16 to f32
      %2 = arith.extf %0 : bf16 to f32
      %3 = arith.mulf %1, %2 : f32
      %4 = arith.extf %0 : bf16 to f32
      %5 = arith.addf %3, %4 : f32
      rdu_tile.yield %5 : f32
    }
    dataflow.yield %y : tensor<8xf32>
  }
}

// CHECK:      ^bb0(%0: bf16):
// CHECK-NEXT:   %1 = arith.extf %0 : bf16 to f32
// CHECK-NEXT:   %2 = arith.mulf %1, %1 : f32
// CHECK-NEXT:   %3 = arith.addf %2, %1 : f32
// CHECK-NEXT:   rdu_tile.yield %3 : f32

// -----

// A weight rounded to bf16 and read by a matmul x W^T (its lanes walk W's rows, a stride of 8)
// is written transposed: the matmul and the transposing copy read W^T along its rows.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["x", "w"], arg_roles = [#dataflow<role input>, #dataflow<role parameter>], result_names = ["y", "t"], result_roles = [#dataflow<role output>, #dataflow<role activation>]} {
  ^bb0(%x: tensor<4x8xbf16>, %w: tensor<6x8xf32>):
    %wb = rdu_tile.kernel @cast_0 (%w) space [6, 8] tile [6, 8] ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (tensor<6x8xf32>) -> tensor<6x8xbf16> {
    ^bb0(%0: f32):
      %1 = arith.truncf %0 : f32 to bf16
      rdu_tile.yield %1 : bf16
    }
    %y = rdu_tile.kernel @matmul_1 (%x, %wb) space [4, 6, 8] tile [4, 6, 8] ins [#rdu_tile.access<0 : [8, 0, 1]>, #rdu_tile.access<0 : [0, 8, 1]>] out #rdu_tile.access<0 : [6, 1, 0]> combiner add : (tensor<4x8xbf16>, tensor<6x8xbf16>) -> tensor<4x6xf32> {
    ^bb0(%0: bf16, %1: bf16):
      %2 = arith.extf %0 : bf16 to f32
      %3 = arith.extf %1 : bf16 to f32
      %4 = arith.mulf %2, %3 : f32
      rdu_tile.yield %4 : f32
    }
    %t = rdu_tile.kernel @copy_2 (%wb) space [8, 6] tile [8, 6] ins [#rdu_tile.access<0 : [1, 8]>] out #rdu_tile.access<0 : [6, 1]> combiner none : (tensor<6x8xbf16>) -> tensor<8x6xbf16> {
    ^bb0(%0: bf16):
      rdu_tile.yield %0 : bf16
    }
    dataflow.yield %y, %t : tensor<4x6xf32>, tensor<8x6xbf16>
  }
}

// CHECK:      %wb = rdu_tile.kernel @cast_0 (%w) space [6, 8] tile [6, 8] ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [1, 6]> combiner none : (tensor<6x8xf32>) -> tensor<8x6xbf16> {
// CHECK:      %y = rdu_tile.kernel @matmul_1 (%x, %wb) space [4, 6, 8] tile [4, 6, 8] ins [#rdu_tile.access<0 : [8, 0, 1]>, #rdu_tile.access<0 : [0, 1, 6]>] out #rdu_tile.access<0 : [6, 1, 0]> combiner add : (tensor<4x8xbf16>, tensor<8x6xbf16>) -> tensor<4x6xf32> {
// CHECK:      %t = rdu_tile.kernel @copy_2 (%wb) space [8, 6] tile [8, 6] ins [#rdu_tile.access<0 : [6, 1]>] out #rdu_tile.access<0 : [6, 1]> combiner none : (tensor<8x6xbf16>) -> tensor<8x6xbf16> {

// -----

// A bf16 matmul's result that its one reader only rounds (a round trip to bf16 and back, as
// torch's bf16 matmul result widened for f32 ops in a backward; or a rounding inside a fused
// body) is rounded by the matmul on its way out: the round trip becomes a widening, inlined
// into its reader, and the fused reader takes the bf16 value as it is. Not rewritten: a reader
// that also uses the f32 value unrounded (matmul_5).

builtin.module {
  dataflow.section @backward backward attributes {arg_names = ["x", "w", "y"], arg_roles = [#dataflow<role input>, #dataflow<role parameter>, #dataflow<role input>], result_names = ["e", "g", "h"], result_roles = [#dataflow<role output>, #dataflow<role output>, #dataflow<role output>]} {
  ^bb0(%x: tensor<4x8xbf16>, %w: tensor<2x8xbf16>, %y: tensor<4x2xf32>):
    %mm = rdu_tile.kernel @matmul_0 (%x, %w) space [4, 2, 8] tile [4, 2, 8] ins [#rdu_tile.access<0 : [8, 0, 1]>, #rdu_tile.access<0 : [0, 8, 1]>] out #rdu_tile.access<0 : [2, 1, 0]> combiner add : (tensor<4x8xbf16>, tensor<2x8xbf16>) -> tensor<4x2xf32> {
    ^bb0(%0: bf16, %1: bf16):
      %2 = arith.extf %0 : bf16 to f32
      %3 = arith.extf %1 : bf16 to f32
      %4 = arith.mulf %2, %3 : f32
      rdu_tile.yield %4 : f32
    }
    %f = rdu_tile.kernel @cast_1 (%mm) space [4, 2] tile [4, 2] ins [#rdu_tile.access<0 : [2, 1]>] out #rdu_tile.access<0 : [2, 1]> combiner none : (tensor<4x2xf32>) -> tensor<4x2xf32> {
    ^bb0(%0: f32):
      %1 = arith.truncf %0 : f32 to bf16
      %2 = arith.extf %1 : bf16 to f32
      rdu_tile.yield %2 : f32
    }
    %e = rdu_tile.kernel @exp_2 (%f) space [4, 2] tile [4, 2] ins [#rdu_tile.access<0 : [2, 1]>] out #rdu_tile.access<0 : [2, 1]> combiner none : (tensor<4x2xf32>) -> tensor<4x2xf32> {
    ^bb0(%0: f32):
      %1 = math.exp %0 : f32
      rdu_tile.yield %1 : f32
    }
    %mm2 = rdu_tile.kernel @matmul_3 (%x, %w) space [4, 2, 8] tile [4, 2, 8] ins [#rdu_tile.access<0 : [8, 0, 1]>, #rdu_tile.access<0 : [0, 8, 1]>] out #rdu_tile.access<0 : [2, 1, 0]> combiner add : (tensor<4x8xbf16>, tensor<2x8xbf16>) -> tensor<4x2xf32> {
    ^bb0(%0: bf16, %1: bf16):
      %2 = arith.extf %0 : bf16 to f32
      %3 = arith.extf %1 : bf16 to f32
      %4 = arith.mulf %2, %3 : f32
      rdu_tile.yield %4 : f32
    }
    %g = rdu_tile.kernel @mul_4 (%y, %mm2) space [4, 2] tile [4, 2] ins [#rdu_tile.access<0 : [2, 1]>, #rdu_tile.access<0 : [2, 1]>] out #rdu_tile.access<0 : [2, 1]> combiner none : (tensor<4x2xf32>, tensor<4x2xf32>) -> tensor<4x2xbf16> {
    ^bb0(%0: f32, %1: f32):
      %2 = arith.truncf %1 : f32 to bf16
      %3 = arith.extf %2 : bf16 to f32
      %4 = arith.mulf %0, %3 : f32
      %5 = arith.truncf %4 : f32 to bf16
      rdu_tile.yield %5 : bf16
    }
    %mm3 = rdu_tile.kernel @matmul_5 (%x, %w) space [4, 2, 8] tile [4, 2, 8] ins [#rdu_tile.access<0 : [8, 0, 1]>, #rdu_tile.access<0 : [0, 8, 1]>] out #rdu_tile.access<0 : [2, 1, 0]> combiner add : (tensor<4x8xbf16>, tensor<2x8xbf16>) -> tensor<4x2xf32> {
    ^bb0(%0: bf16, %1: bf16):
      %2 = arith.extf %0 : bf16 to f32
      %3 = arith.extf %1 : bf16 to f32
      %4 = arith.mulf %2, %3 : f32
      rdu_tile.yield %4 : f32
    }
    %h = rdu_tile.kernel @sub_6 (%mm3) space [4, 2] tile [4, 2] ins [#rdu_tile.access<0 : [2, 1]>] out #rdu_tile.access<0 : [2, 1]> combiner none : (tensor<4x2xf32>) -> tensor<4x2xf32> {
    ^bb0(%0: f32):
      %1 = arith.truncf %0 : f32 to bf16
      %2 = arith.extf %1 : bf16 to f32
      %3 = arith.subf %0, %2 : f32
      rdu_tile.yield %3 : f32
    }
    dataflow.yield %e, %g, %h : tensor<4x2xf32>, tensor<4x2xbf16>, tensor<4x2xf32>
  }
}

// CHECK:      ^bb0(%x: tensor<4x8xbf16>, %w: tensor<2x8xbf16>, %y: tensor<4x2xf32>):
// CHECK-NEXT:   %mm = rdu_tile.kernel @matmul_0 (%x, %w) space [4, 2, 8] tile [4, 2, 8] ins [#rdu_tile.access<0 : [8, 0, 1]>, #rdu_tile.access<0 : [0, 8, 1]>] out #rdu_tile.access<0 : [2, 1, 0]> combiner add : (tensor<4x8xbf16>, tensor<2x8xbf16>) -> tensor<4x2xbf16> {
// CHECK-NEXT:   ^bb0(%0: bf16, %1: bf16):
// CHECK-NEXT:     %2 = arith.mulf %0, %1 : bf16
// CHECK-NEXT:     rdu_tile.yield %2 : bf16
// CHECK-NEXT:   }
// CHECK-NEXT:   %e = rdu_tile.kernel @exp_2 (%mm) space [4, 2] tile [4, 2] ins [#rdu_tile.access<0 : [2, 1]>] out #rdu_tile.access<0 : [2, 1]> combiner none : (tensor<4x2xbf16>) -> tensor<4x2xf32> {
// CHECK-NEXT:   ^bb0(%0: bf16):
// CHECK-NEXT:     %1 = arith.extf %0 : bf16 to f32
// CHECK-NEXT:     %2 = math.exp %1 : f32
// CHECK-NEXT:     rdu_tile.yield %2 : f32
// CHECK-NEXT:   }
// CHECK-NEXT:   %mm2 = rdu_tile.kernel @matmul_3 (%x, %w) {{.*}} -> tensor<4x2xbf16> {
// CHECK-NEXT:   ^bb0(%0: bf16, %1: bf16):
// CHECK-NEXT:     %2 = arith.mulf %0, %1 : bf16
// CHECK-NEXT:     rdu_tile.yield %2 : bf16
// CHECK-NEXT:   }
// CHECK-NEXT:   %g = rdu_tile.kernel @mul_4 (%y, %mm2) {{.*}} : (tensor<4x2xf32>, tensor<4x2xbf16>) -> tensor<4x2xbf16> {
// CHECK-NEXT:   ^bb0(%0: f32, %1: bf16):
// CHECK-NEXT:     %2 = arith.extf %1 : bf16 to f32
// CHECK-NEXT:     %3 = arith.mulf %0, %2 : f32
// CHECK-NEXT:     %4 = arith.truncf %3 : f32 to bf16
// CHECK-NEXT:     rdu_tile.yield %4 : bf16
// CHECK-NEXT:   }
// CHECK-NEXT:   %mm3 = rdu_tile.kernel @matmul_5 (%x, %w) {{.*}} -> tensor<4x2xf32> {
// CHECK:        %h = rdu_tile.kernel @sub_6 (%mm3) {{.*}} : (tensor<4x2xf32>) -> tensor<4x2xf32> {
// CHECK-NEXT:   ^bb0(%0: f32):
// CHECK-NEXT:     %1 = arith.truncf %0 : f32 to bf16
