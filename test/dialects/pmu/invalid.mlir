// RUN: rdu-opt %s --verify-diagnostics --split-input-file | filecheck %s

// The memref has the source's shape.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %b = pmu.buffer %a {name = "b", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<8x4xf32>
    dataflow.yield
  }
}

// CHECK: pmu.buffer "b": result memref<8x4xf32> must have the shape and element type of its source tensor<4x8xf32>

// -----

// The memref has the source's element type.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %b = pmu.buffer %a {name = "b", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xi64>
    dataflow.yield
  }
}

// CHECK: pmu.buffer "b": result memref<4x8xi64> must have the shape and element type of its source tensor<4x8xf32>

// -----

// N-buffering is at least 1.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %b = pmu.buffer %a {name = "b", tile_bytes = 128 : i64, nbuf = 0 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    dataflow.yield
  }
}

// CHECK: pmu.buffer "b": nbuf must be >= 1, got 0

// -----

// Tiles have bytes.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %b = pmu.buffer %a {name = "b", tile_bytes = 0 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    dataflow.yield
  }
}

// CHECK: pmu.buffer "b": tile_bytes must be >= 1, got 0

// -----

// The source is a section argument or a PCU.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %t = "test.op"() : () -> tensor<4x8xf32>
    %b = pmu.buffer %t {name = "b", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    dataflow.yield
  }
}

// CHECK: pmu.buffer "b": source must be a section argument or a 'pcu.unit' result, got a 'test.op' result

// -----

// 'at' is [x, y].
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %b = pmu.buffer %a {name = "b", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64, at = array<i64: 1, 2, 3>} : tensor<4x8xf32> -> memref<4x8xf32>
    dataflow.yield
  }
}

// CHECK: pmu.buffer "b": 'at' must be [x, y], got 3 values

// -----

// A route is flattened coordinate pairs.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %b = pmu.buffer %a {name = "b", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64, route = array<i64>} : tensor<4x8xf32> -> memref<4x8xf32>
    dataflow.yield
  }
}

// CHECK: pmu.buffer "b": 'route' must be flattened [x, y] switch coordinates (a non-empty, even number of values), got 0 values

// -----

// A store route is flattened coordinate pairs.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %b = pmu.buffer %a {name = "b", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64, store_route = array<i64: 1>} : tensor<4x8xf32> -> memref<4x8xf32>
    dataflow.yield
  }
}

// CHECK: pmu.buffer "b": 'store_route' must be flattened [x, y] switch coordinates (a non-empty, even number of values), got 1 values

// -----

// All properties are required.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %b = pmu.buffer %a {name = "b", tile_bytes = 128 : i64, nbuf = 2 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    dataflow.yield
  }
}

// CHECK: property 'banks' expected
