// RUN: rdu-opt %s | rdu-opt | filecheck %s
// RUN: rdu-opt %s --print-debuginfo | rdu-opt --print-debuginfo | filecheck %s --check-prefix=LOC

// rdu_tile ops survive print -> parse -> print; the kernel keeps its location.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a", "b"], arg_roles = [#dataflow<role input>, #dataflow<role parameter>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
  ^bb0(%a: tensor<16x64xf32>, %b: tensor<64x128xf32>):
    %c = rdu_tile.kernel @matmul_0 (%a, %b) space [16, 128, 64] tile [16, 128, 64] ins [#rdu_tile.access<0 : [64, 0, 1]>, #rdu_tile.access<0 : [0, 1, 128]>] out #rdu_tile.access<0 : [128, 1, 0]> combiner add : (tensor<16x64xf32>, tensor<64x128xf32>) -> tensor<16x128xf32> {
    ^bb0(%x: f32, %y: f32):
      %p = arith.mulf %x, %y : f32
      rdu_tile.yield %p : f32
    } loc("model.py":3:0)
    %i = rdu_tile.kernel () space [16] tile [16] ins [] out #rdu_tile.access<0 : [1]> combiner none : () -> tensor<16xi64> {
      %j = rdu_tile.index 0 : i64
      rdu_tile.yield %j : i64
    }
    dataflow.yield %c : tensor<16x128xf32>
  }
}

// CHECK:      builtin.module {
// CHECK-NEXT:   dataflow.section @forward forward attributes {arg_names = ["a", "b"], arg_roles = [#dataflow<role input>, #dataflow<role parameter>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
// CHECK-NEXT:   ^bb0(%a: tensor<16x64xf32>, %b: tensor<64x128xf32>):
// CHECK-NEXT:     %c = rdu_tile.kernel @matmul_0 (%a, %b) space [16, 128, 64] tile [16, 128, 64] ins [#rdu_tile.access<0 : [64, 0, 1]>, #rdu_tile.access<0 : [0, 1, 128]>] out #rdu_tile.access<0 : [128, 1, 0]> combiner add : (tensor<16x64xf32>, tensor<64x128xf32>) -> tensor<16x128xf32> {
// CHECK-NEXT:     ^bb0(%x: f32, %y: f32):
// CHECK-NEXT:       %p = arith.mulf %x, %y : f32
// CHECK-NEXT:       rdu_tile.yield %p : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %i = rdu_tile.kernel () space [16] tile [16] ins [] out #rdu_tile.access<0 : [1]> combiner none : () -> tensor<16xi64> {
// CHECK-NEXT:       %j = rdu_tile.index 0 : i64
// CHECK-NEXT:       rdu_tile.yield %j : i64
// CHECK-NEXT:     }
// CHECK-NEXT:     dataflow.yield %c : tensor<16x128xf32>
// CHECK-NEXT:   }
// CHECK-NEXT: }

// LOC: } loc("model.py":3:0)
