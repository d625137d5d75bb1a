// RUN: rdu-opt %s | rdu-opt | filecheck %s
// RUN: rdu-opt %s --print-debuginfo | rdu-opt --print-debuginfo | filecheck %s --check-prefix=LOC

// Every dataflow op in its custom syntax survives print -> parse -> print.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["net.0.weight", "input.0"], arg_roles = [#dataflow<role parameter>, #dataflow<role input>], result_names = ["output.0", "saved.relu"], result_roles = [#dataflow<role output>, #dataflow<role activation>]} {
  ^bb0(%w: tensor<10xf32>, %x: tensor<16x10xf32>):
    %a = dataflow.pointwise add(%x, %w) : (tensor<16x10xf32>, tensor<10xf32>) -> tensor<16x10xf32> loc("model.py":12:0)
    %t = dataflow.transpose %a perm [1, 0] : (tensor<16x10xf32>) -> tensor<10x16xf32>
    %m = dataflow.matmul %a, %t : (tensor<16x10xf32>, tensor<10x16xf32>) -> tensor<16x16xf32>
    %r = dataflow.reduce sum %a dims [1] : (tensor<16x10xf32>) -> tensor<16xf32>
    %rk = dataflow.reduce max %a dims [0, 1] : (tensor<16x10xf32>) -> tensor<1x1xf32>
    %f = dataflow.fill 1.0 : tensor<f32>
    %g = dataflow.fill -inf : tensor<f32>
    %h = dataflow.fill 3 : tensor<16xi64>
    %i = dataflow.iota dim 1 : tensor<16x10xi64>
    %rs = dataflow.reshape %a : (tensor<16x10xf32>) -> tensor<160xf32>
    %b = dataflow.broadcast %w : (tensor<10xf32>) -> tensor<16x10xf32>
    %n = dataflow.pointwise neg(%a) : (tensor<16x10xf32>) -> tensor<16x10xf32>
    %c = dataflow.pointwise gt(%a, %f) : (tensor<16x10xf32>, tensor<f32>) -> tensor<16x10xi1>
    %s = dataflow.pointwise select(%c, %a, %f) : (tensor<16x10xi1>, tensor<16x10xf32>, tensor<f32>) -> tensor<16x10xf32>
    %k = dataflow.pointwise cast(%i) : (tensor<16x10xi64>) -> tensor<16x10xf32>
    dataflow.yield %m, %s : tensor<16x16xf32>, tensor<16x10xf32>
  }
  dataflow.section @optimizer optimizer attributes {arg_names = [], arg_roles = [], result_names = [], result_roles = []} {
    dataflow.yield
  }
}

// CHECK:      builtin.module {
// CHECK-NEXT:   dataflow.section @forward forward attributes {arg_names = ["net.0.weight", "input.0"], arg_roles = [#dataflow<role parameter>, #dataflow<role input>], result_names = ["output.0", "saved.relu"], result_roles = [#dataflow<role output>, #dataflow<role activation>]} {
// CHECK-NEXT:   ^bb0(%w: tensor<10xf32>, %x: tensor<16x10xf32>):
// CHECK-NEXT:     %a = dataflow.pointwise add(%x, %w) : (tensor<16x10xf32>, tensor<10xf32>) -> tensor<16x10xf32>
// CHECK-NEXT:     %t = dataflow.transpose %a perm [1, 0] : (tensor<16x10xf32>) -> tensor<10x16xf32>
// CHECK-NEXT:     %m = dataflow.matmul %a, %t : (tensor<16x10xf32>, tensor<10x16xf32>) -> tensor<16x16xf32>
// CHECK-NEXT:     %r = dataflow.reduce sum %a dims [1] : (tensor<16x10xf32>) -> tensor<16xf32>
// CHECK-NEXT:     %rk = dataflow.reduce max %a dims [0, 1] : (tensor<16x10xf32>) -> tensor<1x1xf32>
// CHECK-NEXT:     %f = dataflow.fill 1.000000e+00 : tensor<f32>
// CHECK-NEXT:     %g = dataflow.fill -inf : tensor<f32>
// CHECK-NEXT:     %h = dataflow.fill 3 : tensor<16xi64>
// CHECK-NEXT:     %i = dataflow.iota dim 1 : tensor<16x10xi64>
// CHECK-NEXT:     %rs = dataflow.reshape %a : (tensor<16x10xf32>) -> tensor<160xf32>
// CHECK-NEXT:     %b = dataflow.broadcast %w : (tensor<10xf32>) -> tensor<16x10xf32>
// CHECK-NEXT:     %n = dataflow.pointwise neg(%a) : (tensor<16x10xf32>) -> tensor<16x10xf32>
// CHECK-NEXT:     %c = dataflow.pointwise gt(%a, %f) : (tensor<16x10xf32>, tensor<f32>) -> tensor<16x10xi1>
// CHECK-NEXT:     %s = dataflow.pointwise select(%c, %a, %f) : (tensor<16x10xi1>, tensor<16x10xf32>, tensor<f32>) -> tensor<16x10xf32>
// CHECK-NEXT:     %k = dataflow.pointwise cast(%i) : (tensor<16x10xi64>) -> tensor<16x10xf32>
// CHECK-NEXT:     dataflow.yield %m, %s : tensor<16x16xf32>, tensor<16x10xf32>
// CHECK-NEXT:   }
// CHECK-NEXT:   dataflow.section @optimizer optimizer attributes {arg_names = [], arg_roles = [], result_names = [], result_roles = []} {
// CHECK-NEXT:     dataflow.yield
// CHECK-NEXT:   }
// CHECK-NEXT: }

// Locations survive too (printed with --print-debuginfo).
// LOC: dataflow.pointwise add(%x, %w) : (tensor<16x10xf32>, tensor<10xf32>) -> tensor<16x10xf32> loc("model.py":12:0)
