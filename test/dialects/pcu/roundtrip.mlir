// RUN: rdu-opt %s | rdu-opt | filecheck %s
// RUN: rdu-opt %s --print-debuginfo | rdu-opt --print-debuginfo | filecheck %s --check-prefix=LOC

// pcu ops, with and without the placement properties, survive print -> parse -> print.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a", "b"], arg_roles = [#dataflow<role input>, #dataflow<role parameter>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
  ^bb0(%a: tensor<16x64xf32>, %b: tensor<64x128xf32>):
    %ab = pmu.buffer %a {name = "a", tile_bytes = 4096 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<16x64xf32> -> memref<16x64xf32>
    %bb = pmu.buffer %b {name = "b", tile_bytes = 4096 : i64, nbuf = 2 : i64, banks = 16 : i64, placement = #pmu.placement<at (1, 0), fill (0, 0) -> (1, 0)>} : tensor<64x128xf32> -> memref<64x128xf32>
    %c = pcu.unit @matmul_3 (%ab, %bb) space [16, 128, 64] tile [16, 128, 64] lanes 16 ins [#rdu_tile.access<0 : [64, 0, 1]>, #rdu_tile.access<0 : [0, 1, 128]>] out #rdu_tile.access<0 : [128, 1, 0]> combiner add placed #pcu.placement<at (0, 0), routes [(1, 0) -> (0, 0), (1, 1) -> (0, 1) -> (0, 0)]> : (memref<16x64xf32>, memref<64x128xf32>) -> tensor<16x128xf32> {
    ^bb0(%x: f32, %y: f32):
      %p = pcu.stage mul(%x, %y) : (f32, f32) -> f32
      %z = pcu.const 0.5 : f32
      %n = pcu.const -inf : f32
      %t = pcu.const true : i1
      %k = pcu.const -3 : i64
      %i = pcu.counter 2 : i64
      %ic = pcu.stage cast(%i) : (i64) -> f32
      %q = pcu.stage max(%p, %z) : (f32, f32) -> f32
      %s = pcu.stage select(%t, %q, %n) : (i1, f32, f32) -> f32
      pcu.yield %s : f32
    } loc("model.py":7:0)
    %cb = pmu.buffer %c {name = "matmul_3", tile_bytes = 4096 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<16x128xf32> -> memref<16x128xf32>
    dataflow.yield %cb : memref<16x128xf32>
  }
}

// CHECK:      builtin.module {
// CHECK-NEXT:   dataflow.section @forward forward attributes {arg_names = ["a", "b"], arg_roles = [#dataflow<role input>, #dataflow<role parameter>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
// CHECK-NEXT:   ^bb0(%a: tensor<16x64xf32>, %b: tensor<64x128xf32>):
// CHECK-NEXT:     %ab = pmu.buffer %a {name = "a", tile_bytes = 4096 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<16x64xf32> -> memref<16x64xf32>
// CHECK-NEXT:     %bb = pmu.buffer %b {name = "b", tile_bytes = 4096 : i64, nbuf = 2 : i64, banks = 16 : i64, placement = #pmu.placement<at (1, 0), fill (0, 0) -> (1, 0)>} : tensor<64x128xf32> -> memref<64x128xf32>
// CHECK-NEXT:     %c = pcu.unit @matmul_3 (%ab, %bb) space [16, 128, 64] tile [16, 128, 64] lanes 16 ins [#rdu_tile.access<0 : [64, 0, 1]>, #rdu_tile.access<0 : [0, 1, 128]>] out #rdu_tile.access<0 : [128, 1, 0]> combiner add placed #pcu.placement<at (0, 0), routes [(1, 0) -> (0, 0), (1, 1) -> (0, 1) -> (0, 0)]> : (memref<16x64xf32>, memref<64x128xf32>) -> tensor<16x128xf32> {
// CHECK-NEXT:     ^bb0(%x: f32, %y: f32):
// CHECK-NEXT:       %p = pcu.stage mul(%x, %y) : (f32, f32) -> f32
// CHECK-NEXT:       %z = pcu.const 5.000000e-01 : f32
// CHECK-NEXT:       %n = pcu.const -inf : f32
// CHECK-NEXT:       %t = pcu.const true : i1
// CHECK-NEXT:       %k = pcu.const -3 : i64
// CHECK-NEXT:       %i = pcu.counter 2 : i64
// CHECK-NEXT:       %ic = pcu.stage cast(%i) : (i64) -> f32
// CHECK-NEXT:       %q = pcu.stage max(%p, %z) : (f32, f32) -> f32
// CHECK-NEXT:       %s = pcu.stage select(%t, %q, %n) : (i1, f32, f32) -> f32
// CHECK-NEXT:       pcu.yield %s : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %cb = pmu.buffer %c {name = "matmul_3", tile_bytes = 4096 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<16x128xf32> -> memref<16x128xf32>
// CHECK-NEXT:     dataflow.yield %cb : memref<16x128xf32>
// CHECK-NEXT:   }
// CHECK-NEXT: }
// LOC: } loc("model.py":7:0)
