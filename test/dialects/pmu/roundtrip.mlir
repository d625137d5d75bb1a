// RUN: rdu-opt %s | rdu-opt | filecheck %s
// RUN: rdu-opt %s --print-debuginfo | rdu-opt --print-debuginfo | filecheck %s --check-prefix=LOC

// pmu buffers loaded from DRAM and written by a PCU, with and without placement, survive print -> parse -> print.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["net.0.weight"], arg_roles = [#dataflow<role parameter>], result_names = ["output.0", "net.0.weight"], result_roles = [#dataflow<role output>, #dataflow<role parameter>]} {
  ^bb0(%w: tensor<4x8xf32>):
    %wp = pmu.buffer %w {name = "net.0.weight", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32> loc("model.py":5:0)
    %n = pcu.unit @neg_1 (%wp) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (memref<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%x: f32):
      %y = pcu.stage neg(%x) : (f32) -> f32
      pcu.yield %y : f32
    }
    %np = pmu.buffer %n {name = "neg_1", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64, placement = #pmu.placement<at (1, 2), fill (0, 2) -> (1, 2), store (1, 2) -> (0, 2)>} : tensor<4x8xf32> -> memref<4x8xf32>
    dataflow.yield %np, %wp : memref<4x8xf32>, memref<4x8xf32>
  }
}

// CHECK:      builtin.module {
// CHECK-NEXT:   dataflow.section @forward forward attributes {arg_names = ["net.0.weight"], arg_roles = [#dataflow<role parameter>], result_names = ["output.0", "net.0.weight"], result_roles = [#dataflow<role output>, #dataflow<role parameter>]} {
// CHECK-NEXT:   ^bb0(%w: tensor<4x8xf32>):
// CHECK-NEXT:     %wp = pmu.buffer %w {name = "net.0.weight", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x8xf32> -> memref<4x8xf32>
// CHECK-NEXT:     %n = pcu.unit @neg_1 (%wp) space [4, 8] tile [4, 8] lanes 16 ins [#rdu_tile.access<0 : [8, 1]>] out #rdu_tile.access<0 : [8, 1]> combiner none : (memref<4x8xf32>) -> tensor<4x8xf32> {
// CHECK-NEXT:     ^bb0(%x: f32):
// CHECK-NEXT:       %y = pcu.stage neg(%x) : (f32) -> f32
// CHECK-NEXT:       pcu.yield %y : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %np = pmu.buffer %n {name = "neg_1", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64, placement = #pmu.placement<at (1, 2), fill (0, 2) -> (1, 2), store (1, 2) -> (0, 2)>} : tensor<4x8xf32> -> memref<4x8xf32>
// CHECK-NEXT:     dataflow.yield %np, %wp : memref<4x8xf32>, memref<4x8xf32>
// CHECK-NEXT:   }
// CHECK-NEXT: }
// LOC: pmu.buffer %w {{.*}} loc("model.py":5:0)
