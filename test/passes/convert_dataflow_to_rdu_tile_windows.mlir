// RUN: rdu-opt %s -p 'convert-dataflow-to-rdu-tile{target=plasticine}' | filecheck %s

// A convolution as the frontend builds it: a zero pad (an offset, strided out access into a
// zero-initialised result), as_strided windows that fold into the accesses, and a mul read only
// by a sum fused into one multiply-accumulate "contract" kernel. A window over a transposed
// (non-row-major) tensor copies it first; a mul with another reader is not fused.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["x", "w"], arg_roles = [#dataflow<role input>, #dataflow<role parameter>], result_names = ["y", "t", "m"], result_roles = [#dataflow<role output>, #dataflow<role output>, #dataflow<role output>]} {
  ^bb0(%x: tensor<2x1x5x5xf32>, %w: tensor<3x1x3x3xf32>):
    %p = dataflow.pad %x low [0, 0, 1, 1] high [0, 0, 1, 1] interior [0, 0, 0, 0] : (tensor<2x1x5x5xf32>) -> tensor<2x1x7x7xf32>
    %xw = dataflow.as_strided %p offset 0 strides [49, 0, 7, 1, 49, 7, 1] : (tensor<2x1x7x7xf32>) -> tensor<2x3x5x5x1x3x3xf32>
    %ww = dataflow.as_strided %w offset 0 strides [0, 9, 0, 0, 9, 3, 1] : (tensor<3x1x3x3xf32>) -> tensor<2x3x5x5x1x3x3xf32>
    %m = dataflow.pointwise mul(%xw, %ww) : (tensor<2x3x5x5x1x3x3xf32>, tensor<2x3x5x5x1x3x3xf32>) -> tensor<2x3x5x5x1x3x3xf32>
    %y = dataflow.reduce sum %m dims [4, 5, 6] : (tensor<2x3x5x5x1x3x3xf32>) -> tensor<2x3x5x5xf32>
    %wt = dataflow.transpose %w perm [1, 0, 3, 2] : (tensor<3x1x3x3xf32>) -> tensor<1x3x3x3xf32>
    %t = dataflow.as_strided %wt offset 8 strides [-1] : (tensor<1x3x3x3xf32>) -> tensor<9xf32>
    %m2 = dataflow.pointwise mul(%t, %t) : (tensor<9xf32>, tensor<9xf32>) -> tensor<9xf32>
    %s2 = dataflow.reduce sum %m2 dims [0] : (tensor<9xf32>) -> tensor<f32>
    dataflow.yield %y, %s2, %m2 : tensor<2x3x5x5xf32>, tensor<f32>, tensor<9xf32>
  }
}

// CHECK:      %p = rdu_tile.kernel @pad_0 (%x) space [2, 1, 5, 5] tile [2, 1, 5, 5] ins [#rdu_tile.access<0 : [25, 25, 5, 1]>] out #rdu_tile.access<8 : [49, 49, 7, 1]> combiner none
// CHECK:      %y = rdu_tile.kernel @contract_1 (%p, %w) space [2, 3, 5, 5, 1, 3, 3] tile [2, 3, 5, 5, 1, 3, 3] ins [#rdu_tile.access<0 : [49, 0, 7, 1, 49, 7, 1]>, #rdu_tile.access<0 : [0, 9, 0, 0, 9, 3, 1]>] out #rdu_tile.access<0 : [75, 25, 5, 1, 0, 0, 0]> combiner add
// CHECK-NEXT: ^bb0(%0: f32, %1: f32):
// CHECK-NEXT:   %2 = arith.mulf %0, %1 : f32
// CHECK-NEXT:   rdu_tile.yield %2 : f32
// CHECK:      %0 = rdu_tile.kernel @copy_2 (%w) space [1, 3, 3, 3] tile [1, 3, 3, 3] ins [#rdu_tile.access<0 : [9, 9, 1, 3]>] out #rdu_tile.access<0 : [27, 9, 3, 1]> combiner none
// CHECK:      %m2 = rdu_tile.kernel @mul_3 (%0, %0) space [9] tile [9] ins [#rdu_tile.access<8 : [-1]>, #rdu_tile.access<8 : [-1]>] out #rdu_tile.access<0 : [1]> combiner none
// CHECK:      %s2 = rdu_tile.kernel @sum_4 (%m2) space [9] tile [9] ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [0]> combiner add
// CHECK:      dataflow.yield %y, %s2, %m2
