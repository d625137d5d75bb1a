// RUN: rdu-opt %s -p 'place-and-route{target=tiny}' | filecheck %s
// RUN: rdu-opt %s -p 'place-and-route{target=tiny},place-and-route{target=tiny}' | filecheck %s

// place-and-route puts every pmu.buffer and pcu.unit of each section on a slot of the 4x4 tiny
// grid (PCU where x + y is even, PMU where odd), and routes every stream through the 5x5 switch
// grid: a PMU's placement gets its slot (`at`), the stream that fills it (`fill`: from DRAM,
// entering at the left-edge switch (0, y) of its row, or from its PCU) and, when yielded, its
// store to DRAM (`store`); a PCU's placement its slot and one stream per input port (`routes`).
// Each section has the whole grid to itself. Running the pass twice gives the same answer (the
// old placement is replaced, not kept).

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["input.0", "net.0.weight", "target.0"], arg_roles = [#dataflow<role input>, #dataflow<role parameter>, #dataflow<role label>], result_names = ["output.0", "saved.mm", "loss"], result_roles = [#dataflow<role output>, #dataflow<role activation>, #dataflow<role loss>]} {
  ^bb0(%x: tensor<2x4xf32>, %w: tensor<4x4xf32>, %t: tensor<2x4xf32>):
    %xb = pmu.buffer %x {name = "input.0", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<2x4xf32> -> memref<2x4xf32>
    %wb = pmu.buffer %w {name = "net.0.weight", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<4x4xf32> -> memref<4x4xf32>
    %mm = pcu.unit @matmul_0 (%xb, %wb) space [2, 4, 4] tile [2, 4, 4] lanes 4 ins [#rdu_tile.access<0 : [4, 0, 1]>, #rdu_tile.access<0 : [0, 1, 4]>] out #rdu_tile.access<0 : [4, 1, 0]> combiner add : (memref<2x4xf32>, memref<4x4xf32>) -> tensor<2x4xf32> {
    ^bb0(%a: f32, %b: f32):
      %p = pcu.stage mul(%a, %b) : (f32, f32) -> f32
      pcu.yield %p : f32
    } loc("model.py":12:0)
    %mmb = pmu.buffer %mm {name = "matmul_0", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<2x4xf32> -> memref<2x4xf32>
    %tb = pmu.buffer %t {name = "target.0", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<2x4xf32> -> memref<2x4xf32>
    %l = pcu.unit @mse_1 (%mmb, %tb) space [2, 4] tile [2, 4] lanes 4 ins [#rdu_tile.access<0 : [4, 1]>, #rdu_tile.access<0 : [4, 1]>] out #rdu_tile.access<0 : [0, 0]> combiner add : (memref<2x4xf32>, memref<2x4xf32>) -> tensor<f32> {
    ^bb0(%a: f32, %b: f32):
      %d = pcu.stage sub(%a, %b) : (f32, f32) -> f32
      %s = pcu.stage mul(%d, %d) : (f32, f32) -> f32
      pcu.yield %s : f32
    } loc(callsite("model.py":20:0 at "train.py":3:0))
    %lb = pmu.buffer %l {name = "mse_1", tile_bytes = 4 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<f32> -> memref<f32>
    dataflow.yield %mmb, %mmb, %lb : memref<2x4xf32>, memref<2x4xf32>, memref<f32>
  }
  dataflow.section @optimizer optimizer attributes {arg_names = ["net.0.weight", "net.0.weight.grad", "lr"], arg_roles = [#dataflow<role parameter>, #dataflow<role gradient>, #dataflow<role hyperparameter>], result_names = ["net.0.weight"], result_roles = [#dataflow<role parameter>]} {
  ^bb0(%w: tensor<4x4xf32>, %g: tensor<4x4xf32>, %lr: tensor<f32>):
    %wb = pmu.buffer %w {name = "net.0.weight", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<4x4xf32> -> memref<4x4xf32>
    %gb = pmu.buffer %g {name = "net.0.weight.grad", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<4x4xf32> -> memref<4x4xf32>
    %lrb = pmu.buffer %lr {name = "lr", tile_bytes = 4 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<f32> -> memref<f32>
    %u = pcu.unit @sgd_0 (%wb, %gb, %lrb) space [4, 4] tile [4, 4] lanes 4 ins [#rdu_tile.access<0 : [4, 1]>, #rdu_tile.access<0 : [4, 1]>, #rdu_tile.access<0 : [0, 0]>] out #rdu_tile.access<0 : [4, 1]> combiner none : (memref<4x4xf32>, memref<4x4xf32>, memref<f32>) -> tensor<4x4xf32> {
    ^bb0(%a: f32, %b: f32, %c: f32):
      %s = pcu.stage mul(%c, %b) : (f32, f32) -> f32
      %n = pcu.stage sub(%a, %s) : (f32, f32) -> f32
      pcu.yield %n : f32
    }
    %ub = pmu.buffer %u {name = "sgd_0", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<4x4xf32> -> memref<4x4xf32>
    dataflow.yield %ub : memref<4x4xf32>
  }
}

// CHECK:      builtin.module attributes {rdu.target = "tiny"} {
// CHECK:        dataflow.section @forward
// CHECK:          %xb = pmu.buffer %x {{{.*}}, placement = #pmu.placement<at (0, 1), fill (0, 1)>}
// CHECK-NEXT:     %wb = pmu.buffer %w {{{.*}}, placement = #pmu.placement<at (0, 3), fill (0, 3)>}
// CHECK-NEXT:     %mm = pcu.unit @matmul_0 (%xb, %wb) {{.*}} combiner add placed #pcu.placement<at (0, 2), routes [(0, 1) -> (0, 2), (0, 3) -> (0, 2)]> :
// CHECK:          %mmb = pmu.buffer %mm {{{.*}}, placement = #pmu.placement<at (1, 2), fill (0, 2) -> (1, 2), store (1, 2) -> (0, 2)>}
// CHECK-NEXT:     %tb = pmu.buffer %t {{{.*}}, placement = #pmu.placement<at (1, 0), fill (0, 0) -> (1, 0)>}
// CHECK-NEXT:     %l = pcu.unit @mse_1 (%mmb, %tb) {{.*}} combiner add placed #pcu.placement<at (1, 1), routes [(1, 2) -> (1, 1), (1, 0) -> (1, 1)]> :
// CHECK:          %lb = pmu.buffer %l {{{.*}}, placement = #pmu.placement<at (2, 1), fill (1, 1) -> (2, 1), store (2, 1) -> (1, 1) -> (0, 1)>}
// CHECK-NEXT:     dataflow.yield %mmb, %mmb, %lb
// CHECK:        dataflow.section @optimizer
// CHECK:          %wb = pmu.buffer %w {{{.*}}, placement = #pmu.placement<at (0, 1), fill (0, 1)>}
// CHECK-NEXT:     %gb = pmu.buffer %g {{{.*}}, placement = #pmu.placement<at (1, 0), fill (0, 0) -> (1, 0)>}
// CHECK-NEXT:     %lrb = pmu.buffer %lr {{{.*}}, placement = #pmu.placement<at (2, 1), fill (0, 1) -> (1, 1) -> (2, 1)>}
// CHECK-NEXT:     %u = pcu.unit @sgd_0 (%wb, %gb, %lrb) {{.*}} combiner none placed #pcu.placement<at (1, 1), routes [(0, 1) -> (1, 1), (1, 0) -> (1, 1), (2, 1) -> (1, 1)]> :
// CHECK:          %ub = pmu.buffer %u {{{.*}}, placement = #pmu.placement<at (1, 2), fill (1, 1) -> (1, 2), store (1, 2) -> (0, 2)>}
// CHECK-NEXT:     dataflow.yield %ub
