// RUN: rdu-opt %s -p 'place-and-route{target=tiny},co-place-sections{target=tiny},pin-resident-symbols{target=tiny}' | filecheck %s
// RUN: rdu-opt %s -p 'place-and-route{target=plasticine},co-place-sections{target=plasticine},pin-resident-symbols{target=plasticine}' | filecheck %s --check-prefix=TOGETHER

// pin-resident-symbols keeps symbols on chip while the sections are loaded in turn. On tiny
// (8 PMUs) the forward's 5 buffers and the optimizer's 6 do not fit together, so
// co-place-sections leaves them apart; the weight, its gradient and its momentum stay on chip
// in pinned homes. The weight's home is the optimizer's updated buffer (sgd_1, its 6th
// pmu.buffer), and the forward's buffer loaded from it sits on the same slot, (2, 1), as does
// the optimizer's own load of the weight: sgd_1 reads the old weight where it writes the new
// one, an update in place (residency.updates_in_place), no hand-off. The gradient lives in the
// optimizer's buffer that loads it, at (0, 1), and the momentum in the optimizer's updated
// buffer, at (1, 2); momentum_0 reads the old momentum transposed, so not where it writes the
// new, and a hand-off copies it into its load. The forward binds nothing to the gradient or
// the momentum, and its buffers fit a PMU beside theirs: it puts its matmul_0 on (0, 1) and
// its mse_1 on (1, 2), using those PMUs' other addresses (rules.beside_pinned_home). On
// plasticine the sections fit together: co-place-sections keeps them on chip and this pass
// does nothing.

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
  dataflow.section @optimizer optimizer attributes {arg_names = ["net.0.weight", "net.0.weight.grad", "net.0.weight.momentum_buffer", "lr"], arg_roles = [#dataflow<role parameter>, #dataflow<role gradient>, #dataflow<role optimizer_state>, #dataflow<role hyperparameter>], result_names = ["net.0.weight", "net.0.weight.momentum_buffer"], result_roles = [#dataflow<role parameter>, #dataflow<role optimizer_state>]} {
  ^bb0(%w: tensor<4x4xf32>, %g: tensor<4x4xf32>, %m: tensor<4x4xf32>, %lr: tensor<f32>):
    %wb = pmu.buffer %w {name = "net.0.weight", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<4x4xf32> -> memref<4x4xf32>
    %gb = pmu.buffer %g {name = "net.0.weight.grad", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<4x4xf32> -> memref<4x4xf32>
    %mb = pmu.buffer %m {name = "net.0.weight.momentum_buffer", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<4x4xf32> -> memref<4x4xf32>
    %lrb = pmu.buffer %lr {name = "lr", tile_bytes = 4 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<f32> -> memref<f32>
    %v = pcu.unit @momentum_0 (%mb, %gb) space [4, 4] tile [4, 4] lanes 4 ins [#rdu_tile.access<0 : [1, 4]>, #rdu_tile.access<0 : [4, 1]>] out #rdu_tile.access<0 : [4, 1]> combiner none : (memref<4x4xf32>, memref<4x4xf32>) -> tensor<4x4xf32> {
    ^bb0(%a: f32, %b: f32):
      %n = pcu.stage add(%a, %b) : (f32, f32) -> f32
      pcu.yield %n : f32
    }
    %vb = pmu.buffer %v {name = "momentum_0", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<4x4xf32> -> memref<4x4xf32>
    %u = pcu.unit @sgd_1 (%wb, %vb, %lrb) space [4, 4] tile [4, 4] lanes 4 ins [#rdu_tile.access<0 : [4, 1]>, #rdu_tile.access<0 : [4, 1]>, #rdu_tile.access<0 : [0, 0]>] out #rdu_tile.access<0 : [4, 1]> combiner none : (memref<4x4xf32>, memref<4x4xf32>, memref<f32>) -> tensor<4x4xf32> {
    ^bb0(%a: f32, %b: f32, %c: f32):
      %s = pcu.stage mul(%c, %b) : (f32, f32) -> f32
      %n = pcu.stage sub(%a, %s) : (f32, f32) -> f32
      pcu.yield %n : f32
    }
    %ub = pmu.buffer %u {name = "sgd_1", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<4x4xf32> -> memref<4x4xf32>
    dataflow.yield %ub, %vb : memref<4x4xf32>, memref<4x4xf32>
  }
}

// CHECK:      builtin.module attributes {rdu.target = "tiny", rdu.resident = [
// CHECK-SAME:   ["net.0.weight", "optimizer", #builtin.int<5>, [], [["forward", #builtin.int<1>], ["optimizer", #builtin.int<0>]]],
// CHECK-SAME:   ["net.0.weight.grad", "optimizer", #builtin.int<1>, [], []],
// CHECK-SAME:   ["net.0.weight.momentum_buffer", "optimizer", #builtin.int<4>, [["optimizer", #builtin.int<2>, #pmu.route<(1, 2) -> (1, 3) -> (0, 3)>]], []]],
// CHECK-SAME:   rdu.resident_pinned}
// CHECK:        dataflow.section @forward
// CHECK:          %wb = pmu.buffer %w {{{.*}}, placement = #pmu.placement<at (2, 1), fill
// CHECK:          %mmb = pmu.buffer %mm {{{.*}}, placement = #pmu.placement<at (0, 1), fill
// CHECK:          %lb = pmu.buffer %l {{{.*}}, placement = #pmu.placement<at (1, 2), fill
// CHECK:        dataflow.section @optimizer
// CHECK:          %wb = pmu.buffer %w {{{.*}}, placement = #pmu.placement<at (2, 1), fill
// CHECK:          %gb = pmu.buffer %g {{{.*}}, placement = #pmu.placement<at (0, 1), fill
// CHECK:          %vb = pmu.buffer %v {{{.*}}, placement = #pmu.placement<at (1, 2), fill
// CHECK:          %ub = pmu.buffer %u {{{.*}}, placement = #pmu.placement<at (2, 1), fill

// TOGETHER:     builtin.module attributes {rdu.target = "plasticine", rdu.resident = [
// TOGETHER-NOT: rdu.resident_pinned
