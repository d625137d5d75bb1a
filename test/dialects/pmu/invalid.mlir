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

// One slot a PMU. (A malformed placement attribute is refused by its parser:
// test/dialects/test_placement_attrs.py.)
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %b = pmu.buffer %a {name = "b", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64, placement = #pmu.placement<at (1, 2)>, pmus = 2 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    dataflow.yield
  }
}

// CHECK: pmu.buffer "b": its placement lists 1 slot(s) for its 2 PMU(s)

// -----

// A placement is a #pmu.placement.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4x8xf32>):
    %ap = pmu.buffer %a {name = "a", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
    %b = pmu.buffer %a {name = "b", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64, placement = array<i64: 1, 2>} : tensor<4x8xf32> -> memref<4x8xf32>
    dataflow.yield
  }
}

// CHECK: array<i64: 1, 2> should be of base attribute pmu.placement

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
