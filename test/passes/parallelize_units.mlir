// RUN: rdu-opt %s --split-input-file -p 'parallelize-units{target=tiny min_vectors=1 balance=false},assign-pmus{target=tiny}' | filecheck %s
// RUN: rdu-opt %s --split-input-file -p 'parallelize-units{target=tiny balance=false},assign-pmus{target=tiny}' | filecheck %s --check-prefix=DEFAULT
// RUN: rdu-opt %s --split-input-file -p 'parallelize-units{target=tiny min_vectors=1 balance=false},assign-pmus{target=tiny},partition-sections{target=tiny},place-and-route{target=tiny}' | filecheck %s --check-prefix=PLACED

// An 8x8x16 matmul on tiny (4x4 grid: 2 rows of 2 PCU slots each, 4 lanes, 4 stages). One PCU
// takes 2 (columns over the lanes) x 2 (rows unrolled 4 at a time) x 16 = 64 vectors. Forced
// (min_vectors=1), its rows go over 2 grid rows and its columns over 2 PCU slots: 4 copies of
// 16 vectors, parallel [2, 2, 1] (never the reduced counter k). Its buffers stay whole on chip,
// in as many PMUs as streams leave or enter them: x's 2 row blocks, w's 2 column blocks, the
// result's 4 writers, one a PMU (half tiny's link capacity of 2): assign-pmus counts them.
// At the default threshold (2^28 vectors) nothing changes.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["input.0", "w"], arg_roles = [#dataflow<role input>, #dataflow<role parameter>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
  ^bb0(%x: tensor<8x16xf32>, %w: tensor<16x8xf32>):
    %xb = pmu.buffer %x {name = "input.0", tile_bytes = 512 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8x16xf32> -> memref<8x16xf32>
    %wb = pmu.buffer %w {name = "w", tile_bytes = 512 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<16x8xf32> -> memref<16x8xf32>
    %mm = pcu.unit @matmul_0 (%xb, %wb) space [8, 8, 16] tile [8, 8, 16] lanes 4 ins [#rdu_tile.access<0 : [16, 0, 1]>, #rdu_tile.access<0 : [0, 1, 8]>] out #rdu_tile.access<0 : [8, 1, 0]> combiner add : (memref<8x16xf32>, memref<16x8xf32>) -> tensor<8x8xf32> {
    ^bb0(%a: f32, %b: f32):
      %p = pcu.stage mul(%a, %b) : (f32, f32) -> f32
      pcu.yield %p : f32
    }
    %mmb = pmu.buffer %mm {name = "matmul_0", tile_bytes = 256 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8x8xf32> -> memref<8x8xf32>
    dataflow.yield %mmb : memref<8x8xf32>
  }
}

// CHECK:      %xb = pmu.buffer %x {name = "input.0", {{.*}}, pmus = 2 : i64}
// CHECK-NEXT: %wb = pmu.buffer %w {name = "w", {{.*}}, pmus = 2 : i64}
// CHECK-NEXT: %mm = pcu.unit @matmul_0 (%xb, %wb) space [8, 8, 16] {{.*}} combiner add parallel [2, 2, 1] :
// CHECK:      %mmb = pmu.buffer %mm {name = "matmul_0", {{.*}}, pmus = 4 : i64}

// DEFAULT-NOT: pmus =
// DEFAULT:     %mm = pcu.unit @matmul_0 (%xb, %wb) {{.*}} combiner add : (
// DEFAULT-NOT: pmus =

// The structured layout: copy (row block r, column block c) at (2c + r % 2, r): copy 0 at
// (0, 0), then (2, 0), (1, 1), (3, 1). The first PMU of each buffer loaded from DRAM sits at
// the DRAM edge (column 0), so its load enters there: x's at (0, 1), w's at (0, 3) (the result
// finds none left). Each multicast stream runs from a PMU of its buffer through the switches
// of the copies it feeds, along a straight line of the grid where the buffer has a PMU for
// every line: x's row block 0 along row 0 from its east end, (3, 0), and row block 1 along
// row 1 from (0, 1). w's column blocks would be four lines (the checkerboard puts a column of
// copies on two columns) but w has two PMUs: one stream a block, column block 0 to copies 0
// and 2, column block 1 to 1 and 3. Each copy's output goes to a PMU of the result.

// PLACED:      %xb = pmu.buffer %x {name = "input.0", {{.*}}, pmus = 2 : i64, placement = #pmu.placement<at [(0, 1), (3, 0)], fill (0, 1)>}
// PLACED:      %wb = pmu.buffer %w {name = "w", {{.*}}, pmus = 2 : i64, placement = #pmu.placement<at [(0, 3), (1, 0)], fill (0, 3)>}
// PLACED:      pcu.unit @matmul_0 {{.*}} parallel [2, 2, 1] placed #pcu.placement<at [(0, 0), (2, 0), (1, 1), (3, 1)],
// PLACED-SAME: streams [port 0 to copies [0, 1] via (3, 0) -> (2, 0) -> (1, 0) -> (0, 0), port 0 to copies [2, 3] via (0, 1) -> (1, 1) -> (2, 1) -> (3, 1), port 1 to copies [0, 2] via (1, 0) -> (0, 0) -> (1, 0) -> (1, 1), port 1 to copies [1, 3] via (0, 3) -> (1, 3) -> (2, 3) -> (2, 2) -> (2, 1) -> (2, 0) -> (3, 0) -> (3, 1)],
// PLACED-SAME: out_routes [(0, 0) -> (1, 0) -> (1, 1) -> (1, 2), (2, 0) -> (2, 1), (1, 1) -> (2, 1), (3, 1) -> (3, 2)]>
// PLACED:      %mmb = pmu.buffer %mm {{.*}} pmus = 4 : i64, placement = #pmu.placement<at [(2, 1), (3, 2), (1, 2), (2, 3)], store (2, 1) -> (1, 1) -> (0, 1)>}

// -----

// A unit that reads its own counter (here through `pcu.counter`) would see a copy's counters:
// never parallelized, whatever the threshold.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["x"], arg_roles = [#dataflow<role input>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
  ^bb0(%x: tensor<64xi64>):
    %xb = pmu.buffer %x {name = "x", tile_bytes = 512 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<64xi64> -> memref<64xi64>
    %r = pcu.unit @iota_0 (%xb) space [64] tile [64] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<64xi64>) -> tensor<64xi64> {
    ^bb0(%a: i64):
      %i = pcu.counter 0 : i64
      %s = pcu.stage add(%a, %i) : (i64, i64) -> i64
      pcu.yield %s : i64
    }
    %rb = pmu.buffer %r {name = "iota_0", tile_bytes = 512 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<64xi64> -> memref<64xi64>
    dataflow.yield %rb : memref<64xi64>
  }
}

// CHECK:     pcu.unit @iota_0
// CHECK-NOT: parallel
