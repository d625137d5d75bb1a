// RUN: rdu-opt %s | rdu-opt | filecheck %s

// The window and padding ops (convolution, pooling) survive print -> parse -> print.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["x"], arg_roles = [#dataflow<role input>], result_names = ["w", "p"], result_roles = [#dataflow<role output>, #dataflow<role output>]} {
  ^bb0(%x: tensor<2x3x7x6xf32>):
    %w = dataflow.as_strided %x offset 7 strides [126, 42, 12, 2, 6, 1] : (tensor<2x3x7x6xf32>) -> tensor<2x3x3x2x2x2xf32>
    %f = dataflow.as_strided %x offset 41 strides [0, 0, -6, -1] : (tensor<2x3x7x6xf32>) -> tensor<4x5x7x6xf32>
    %p = dataflow.pad %x low [0, 0, 1, 2] high [0, 1, 1, 0] interior [0, 0, 1, 0] : (tensor<2x3x7x6xf32>) -> tensor<2x4x15x8xf32>
    dataflow.yield %w, %p : tensor<2x3x3x2x2x2xf32>, tensor<2x4x15x8xf32>
  }
}

// CHECK:      %w = dataflow.as_strided %x offset 7 strides [126, 42, 12, 2, 6, 1] : (tensor<2x3x7x6xf32>) -> tensor<2x3x3x2x2x2xf32>
// CHECK-NEXT: %f = dataflow.as_strided %x offset 41 strides [0, 0, -6, -1] : (tensor<2x3x7x6xf32>) -> tensor<4x5x7x6xf32>
// CHECK-NEXT: %p = dataflow.pad %x low [0, 0, 1, 2] high [0, 1, 1, 0] interior [0, 0, 1, 0] : (tensor<2x3x7x6xf32>) -> tensor<2x4x15x8xf32>
