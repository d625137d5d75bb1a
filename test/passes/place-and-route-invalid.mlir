// RUN: rdu-opt %s -p 'place-and-route{target=tiny}' --verify-diagnostics --split-input-file | filecheck %s
// RUN: rdu-opt %s -p 'place-and-route{target=nope}' --verify-diagnostics --split-input-file | filecheck %s --check-prefix=TARGET

// A section that needs more units of a kind than the target has fails with one line naming the
// section and the target (splitting it into smaller sections is a later pass's job).

builtin.module {
  dataflow.section @backward "backward" attributes {arg_names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"], arg_roles = ["input", "input", "input", "input", "input", "input", "input", "input", "input"], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4xf32>, %b: tensor<4xf32>, %c: tensor<4xf32>, %d: tensor<4xf32>, %e: tensor<4xf32>, %f: tensor<4xf32>, %g: tensor<4xf32>, %h: tensor<4xf32>, %i: tensor<4xf32>):
    %0 = pmu.buffer %a {name = "a", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %1 = pmu.buffer %b {name = "b", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %2 = pmu.buffer %c {name = "c", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %3 = pmu.buffer %d {name = "d", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %4 = pmu.buffer %e {name = "e", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %5 = pmu.buffer %f {name = "f", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %6 = pmu.buffer %g {name = "g", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %7 = pmu.buffer %h {name = "h", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %8 = pmu.buffer %i {name = "i", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    dataflow.yield
  }
}

// CHECK: section 'backward' needs 9 PMUs, target 'tiny' has 8

// -----

// Every PMU of tiny loaded from DRAM and stored back: 16 streams through the left-edge switches,
// more than their links (2 streams each) carry.

builtin.module {
  dataflow.section @forward "forward" attributes {arg_names = ["a", "b", "c", "d", "e", "f", "g", "h"], arg_roles = ["input", "input", "input", "input", "input", "input", "input", "input"], result_names = ["a.out", "b.out", "c.out", "d.out", "e.out", "f.out", "g.out", "h.out"], result_roles = ["output", "output", "output", "output", "output", "output", "output", "output"]} {
  ^bb0(%a: tensor<4xf32>, %b: tensor<4xf32>, %c: tensor<4xf32>, %d: tensor<4xf32>, %e: tensor<4xf32>, %f: tensor<4xf32>, %g: tensor<4xf32>, %h: tensor<4xf32>):
    %0 = pmu.buffer %a {name = "a", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %1 = pmu.buffer %b {name = "b", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %2 = pmu.buffer %c {name = "c", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %3 = pmu.buffer %d {name = "d", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %4 = pmu.buffer %e {name = "e", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %5 = pmu.buffer %f {name = "f", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %6 = pmu.buffer %g {name = "g", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %7 = pmu.buffer %h {name = "h", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    dataflow.yield %0, %1, %2, %3, %4, %5, %6, %7 : memref<4xf32>, memref<4xf32>, memref<4xf32>, memref<4xf32>, memref<4xf32>, memref<4xf32>, memref<4xf32>, memref<4xf32>
  }
}

// CHECK: section 'forward' cannot be routed on target 'tiny': no path with room left for the stream pmu.buffer "{{.}}" -> DRAM (link capacity 2)

// TARGET: unknown target 'nope' (choose from plasticine, tiny)
