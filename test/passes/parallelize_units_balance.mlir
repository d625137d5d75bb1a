// RUN: rdu-opt %s -p 'parallelize-units{target=sn10}' | filecheck %s
// RUN: rdu-opt %s -p 'parallelize-units{target=sn10},assign-pmus{target=sn10},partition-sections{target=sn10},place-and-route{target=sn10}' | filecheck %s --check-prefix=PLACED

// Two independent matmuls on sn10, of 256 and 64 rows (x @ w, w 64 x 64 and shared): one PCU
// takes 11008 and 2816 vectors, six cycles each (the six rows of x a vector reads, unrolled
// down the pipeline, are 64 elements apart: one bank), 66048 and 16896 cycles.
// parallelize-units spreads the units of the section over the free PCUs (the unit with the
// most cycles on the critical path gets its next grid of copies, row blocks over the grid's
// rows and column blocks over the PCU slots of a row) until the section's time is down to its
// DRAM traffic (a, b, w in, ya and yb out: 176 kB at 118 bytes a cycle and the DRAM latency,
// 1656 cycles; a parallel unit waits for its operands to load whole): 88 copies of 768 cycles
// and 16 of 1024, which refine turns within the same 104 PCUs into 72 of 960 (blocks of 15
// rows, unrolled 5 a vector: 3 x 64 vectors, five cycles each, the five rows in one bank) and
// 32 of 512 (8 rows, unrolled 4: 2 x 64 vectors of four cycles). They stay in
// one section, placed with their
// multicast streams (#pcu.stream: one a block of an operand, through the copies reading it:
// a row block of a or b to its copy, w to every copy) and one output route a copy;
// test/passes/test_parallelize.py also limits the PCUs. @ma's and @mb's copies take the rows
// of a and b in turn (interleaved): each is loaded in address order, so all 22 (16) row copies
// follow its load from its first rows, where in blocks the last copy's rows arrive last.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a", "b", "w"], arg_roles = [#dataflow<role input>, #dataflow<role input>, #dataflow<role parameter>], result_names = ["ya", "yb"], result_roles = [#dataflow<role output>, #dataflow<role output>]} {
  ^bb0(%a: tensor<256x64xf32>, %b: tensor<64x64xf32>, %w: tensor<64x64xf32>):
    %ab = pmu.buffer %a {name = "a", tile_bytes = 4096 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<256x64xf32> -> memref<256x64xf32>
    %bb = pmu.buffer %b {name = "b", tile_bytes = 4096 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<64x64xf32> -> memref<64x64xf32>
    %wb = pmu.buffer %w {name = "w", tile_bytes = 4096 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<64x64xf32> -> memref<64x64xf32>
    %ma = pcu.unit @ma (%ab, %wb) space [256, 64, 64] tile [256, 64, 64] lanes 16 ins [#rdu_tile.access<0 : [64, 0, 1]>, #rdu_tile.access<0 : [0, 1, 64]>] out #rdu_tile.access<0 : [64, 1, 0]> combiner add : (memref<256x64xf32>, memref<64x64xf32>) -> tensor<256x64xf32> {
    ^bb0(%x: f32, %y: f32):
      %p = pcu.stage mul(%x, %y) : (f32, f32) -> f32
      pcu.yield %p : f32
    }
    %mab = pmu.buffer %ma {name = "ya", tile_bytes = 4096 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<256x64xf32> -> memref<256x64xf32>
    %mb = pcu.unit @mb (%bb, %wb) space [64, 64, 64] tile [64, 64, 64] lanes 16 ins [#rdu_tile.access<0 : [64, 0, 1]>, #rdu_tile.access<0 : [0, 1, 64]>] out #rdu_tile.access<0 : [64, 1, 0]> combiner add : (memref<64x64xf32>, memref<64x64xf32>) -> tensor<64x64xf32> {
    ^bb0(%x: f32, %y: f32):
      %p = pcu.stage mul(%x, %y) : (f32, f32) -> f32
      pcu.yield %p : f32
    }
    %mbb = pmu.buffer %mb {name = "yb", tile_bytes = 4096 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<64x64xf32> -> memref<64x64xf32>
    dataflow.yield %mab, %mbb : memref<256x64xf32>, memref<64x64xf32>
  }
}

// CHECK: pcu.unit @ma (%ab, %wb) space [256, 64, 64] {{.*}} combiner add parallel [18, 4, 1] interleaved :
// CHECK: pcu.unit @mb (%bb, %wb) space [64, 64, 64] {{.*}} combiner add parallel [8, 4, 1] interleaved :

// PLACED:      dataflow.section @forward
// PLACED-NOT:  dataflow.section
// PLACED:      pcu.unit @ma {{.*}} parallel [18, 4, 1] interleaved placed #pcu.placement<at [{{(\([0-9]+, [0-9]+\), ){71}\([0-9]+, [0-9]+\)}}], streams [port 0 to copies [0, 1, 2, 3] via {{.*}}, port 1 to copies [0, 4, 8, {{[0-9, ]*}}, 68] via {{.*}}], out_routes [{{.*}}]>
// PLACED:      pmu.buffer %ma {name = "ya", {{.*}}placement = #pmu.placement<at {{.*}}, store {{.*}}>}
// PLACED:      pcu.unit @mb {{.*}} parallel [8, 4, 1] interleaved placed #pcu.placement<at [{{(\([0-9]+, [0-9]+\), ){31}\([0-9]+, [0-9]+\)}}], streams [port 0 to copies [0, 1, 2, 3] via {{.*}}, port 1 to copies [0, 4, 8, {{[0-9, ]*}}, 28] via {{.*}}], out_routes [{{.*}}]>
