// RUN: rdu-opt %s | rdu-opt | filecheck %s

// The transformer ops of dataflow survive print -> parse -> print: a slice view, a gather and
// its scatter-add transpose, random numbers.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["w", "input.0", "rng_seed"], arg_roles = [#dataflow<role parameter>, #dataflow<role input>, #dataflow<role hyperparameter>], result_names = ["output.0", "output.1", "output.2"], result_roles = [#dataflow<role output>, #dataflow<role output>, #dataflow<role output>]} {
  ^bb0(%w: tensor<11x5xf32>, %i: tensor<3x4xi64>, %s: tensor<i64>):
    %v = dataflow.extract_slice %w offsets [10, 1] steps [-2, 1] : (tensor<11x5xf32>) -> tensor<4x4xf32>
    %e = dataflow.take %w, %i dim 0 : (tensor<11x5xf32>, tensor<3x4xi64>) -> tensor<3x4x5xf32>
    %g = dataflow.put_add %e, %i dim 0 : (tensor<3x4x5xf32>, tensor<3x4xi64>) -> tensor<11x5xf32>
    %u = dataflow.random %s stream 2 : (tensor<i64>) -> tensor<3x4xf32>
    dataflow.yield %g, %u, %v : tensor<11x5xf32>, tensor<3x4xf32>, tensor<4x4xf32>
  }
}

// CHECK:      %{{.*}} = dataflow.extract_slice %{{.*}} offsets [10, 1] steps [-2, 1] : (tensor<11x5xf32>) -> tensor<4x4xf32>
// CHECK-NEXT: %{{.*}} = dataflow.take %{{.*}}, %{{.*}} dim 0 : (tensor<11x5xf32>, tensor<3x4xi64>) -> tensor<3x4x5xf32>
// CHECK-NEXT: %{{.*}} = dataflow.put_add %{{.*}}, %{{.*}} dim 0 : (tensor<3x4x5xf32>, tensor<3x4xi64>) -> tensor<11x5xf32>
// CHECK-NEXT: %{{.*}} = dataflow.random %{{.*}} stream 2 : (tensor<i64>) -> tensor<3x4xf32>
