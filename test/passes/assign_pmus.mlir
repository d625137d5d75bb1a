// RUN: rdu-opt %s --split-input-file -p 'assign-pmus{target=tiny}' | filecheck %s

// On tiny a PMU holds 16 KiB. The matmul reads the 64x128 f32 part @matmul_0.0 once for every
// column of its result (stride 0 on its counter n): out of the order the part writes it, so the
// part's buffer holds the whole tensor, 32 KiB in 2 PMUs. The buffers loaded from DRAM and the
// result, stored to DRAM, stream through one PMU each (no `pmus`; a stale one is dropped).

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a", "b"], arg_roles = [#dataflow<role input>, #dataflow<role input>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
  ^bb0(%a: tensor<64x128xf32>, %b: tensor<128x4xf32>):
    %0 = pmu.buffer %a {name = "a", tile_bytes = 2048 : i64, nbuf = 2 : i64, banks = 4 : i64, pmus = 3 : i64} : tensor<64x128xf32> -> memref<64x128xf32>
    %1 = pmu.buffer %b {name = "b", tile_bytes = 2048 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<128x4xf32> -> memref<128x4xf32>
    %p = pcu.unit @matmul_0.0 (%0) space [64, 128] tile [4, 128] lanes 4 ins [#rdu_tile.access<0 : [128, 1]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (memref<64x128xf32>) -> tensor<64x128xf32> {
    ^bb0(%x: f32):
      %c2 = pcu.const 2.000000e+00 : f32
      %2 = pcu.stage mul(%x, %c2) : (f32, f32) -> f32
      pcu.yield %2 : f32
    }
    %pb = pmu.buffer %p {name = "matmul_0.0", tile_bytes = 2048 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<64x128xf32> -> memref<64x128xf32>
    %r = pcu.unit @matmul_0 (%1, %pb) space [64, 4, 128] tile [4, 4, 128] lanes 4 ins [#rdu_tile.access<0 : [0, 1, 4]>, #rdu_tile.access<0 : [128, 0, 1]>] out #rdu_tile.access<0 : [4, 1, 0]> combiner add : (memref<128x4xf32>, memref<64x128xf32>) -> tensor<64x4xf32> {
    ^bb0(%x: f32, %y: f32):
      %3 = pcu.stage mul(%y, %x) : (f32, f32) -> f32
      pcu.yield %3 : f32
    }
    %rb = pmu.buffer %r {name = "matmul_0", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<64x4xf32> -> memref<64x4xf32>
    dataflow.yield %rb : memref<64x4xf32>
  }
}

// CHECK:      %0 = pmu.buffer %a {name = "a", tile_bytes = 2048 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<64x128xf32> -> memref<64x128xf32>
// CHECK-NEXT: %1 = pmu.buffer %b {name = "b", tile_bytes = 2048 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<128x4xf32> -> memref<128x4xf32>
// CHECK:      %pb = pmu.buffer %p {name = "matmul_0.0", tile_bytes = 2048 : i64, nbuf = 2 : i64, banks = 4 : i64, pmus = 2 : i64} : tensor<64x128xf32> -> memref<64x128xf32>
// CHECK:      %rb = pmu.buffer %r {name = "matmul_0", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<64x4xf32> -> memref<64x4xf32>

// -----

// A part read in the order it is written (the same row-major walk) streams: one PMU.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
  ^bb0(%a: tensor<64x128xf32>):
    %0 = pmu.buffer %a {name = "a", tile_bytes = 2048 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<64x128xf32> -> memref<64x128xf32>
    %p = pcu.unit @exp_0.0 (%0) space [64, 128] tile [4, 128] lanes 4 ins [#rdu_tile.access<0 : [128, 1]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (memref<64x128xf32>) -> tensor<64x128xf32> {
    ^bb0(%x: f32):
      %1 = pcu.stage exp(%x) : (f32) -> f32
      pcu.yield %1 : f32
    }
    %pb = pmu.buffer %p {name = "exp_0.0", tile_bytes = 2048 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<64x128xf32> -> memref<64x128xf32>
    %r = pcu.unit @exp_0 (%pb) space [64, 128] tile [4, 128] lanes 4 ins [#rdu_tile.access<0 : [128, 1]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (memref<64x128xf32>) -> tensor<64x128xf32> {
    ^bb0(%x: f32):
      %2 = pcu.stage exp(%x) : (f32) -> f32
      pcu.yield %2 : f32
    }
    %rb = pmu.buffer %r {name = "exp_0", tile_bytes = 2048 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<64x128xf32> -> memref<64x128xf32>
    dataflow.yield %rb : memref<64x128xf32>
  }
}

// CHECK-NOT:  pmus =
// CHECK:      %pb = pmu.buffer %p {name = "exp_0.0", tile_bytes = 2048 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<64x128xf32> -> memref<64x128xf32>
// CHECK-NOT:  pmus =
// CHECK:      %rb = pmu.buffer %r {name = "exp_0", tile_bytes = 2048 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<64x128xf32> -> memref<64x128xf32>

// -----

// The buffers of a parallel unit (parallel [2, 2, 1]: 4 copies) stay whole on chip, in as many
// PMUs as streams leave or enter them: x's 2 row blocks, w's 2 column blocks, the result's 4
// writers (one a PMU: half tiny's link capacity of 2).

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["input.0", "w"], arg_roles = [#dataflow<role input>, #dataflow<role parameter>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
  ^bb0(%x: tensor<8x16xf32>, %w: tensor<16x8xf32>):
    %xb = pmu.buffer %x {name = "input.0", tile_bytes = 512 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8x16xf32> -> memref<8x16xf32>
    %wb = pmu.buffer %w {name = "w", tile_bytes = 512 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<16x8xf32> -> memref<16x8xf32>
    %mm = pcu.unit @matmul_0 (%xb, %wb) space [8, 8, 16] tile [8, 8, 16] lanes 4 ins [#rdu_tile.access<0 : [16, 0, 1]>, #rdu_tile.access<0 : [0, 1, 8]>] out #rdu_tile.access<0 : [8, 1, 0]> combiner add parallel [2, 2, 1] : (memref<8x16xf32>, memref<16x8xf32>) -> tensor<8x8xf32> {
    ^bb0(%a: f32, %b: f32):
      %p = pcu.stage mul(%a, %b) : (f32, f32) -> f32
      pcu.yield %p : f32
    }
    %mmb = pmu.buffer %mm {name = "matmul_0", tile_bytes = 256 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8x8xf32> -> memref<8x8xf32>
    dataflow.yield %mmb : memref<8x8xf32>
  }
}

// CHECK:      %xb = pmu.buffer %x {name = "input.0", tile_bytes = 512 : i64, nbuf = 2 : i64, banks = 4 : i64, pmus = 2 : i64}
// CHECK-NEXT: %wb = pmu.buffer %w {name = "w", tile_bytes = 512 : i64, nbuf = 2 : i64, banks = 4 : i64, pmus = 2 : i64}
// CHECK:      %mmb = pmu.buffer %mm {name = "matmul_0", tile_bytes = 256 : i64, nbuf = 2 : i64, banks = 4 : i64, pmus = 4 : i64}
