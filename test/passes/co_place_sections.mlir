// RUN: rdu-opt %s -p 'place-and-route{target=plasticine},co-place-sections{target=plasticine}' | filecheck %s
// RUN: rdu-opt %s -p 'place-and-route{target=tiny},co-place-sections{target=tiny}' | filecheck %s --check-prefix=TINY

// co-place-sections places all sections together when they fit the fabric together (on
// plasticine: 3 PCUs and 9 PMUs of 64 each), each unit on a slot of its own, and keeps on chip
// the symbols the sections hand each other and keep across steps: net.0.weight's home is the
// optimizer's updated buffer (sgd_0, its 4th pmu.buffer); the forward's buffer loaded from it
// (its 2nd) sits on the home's slot (the forward reads the weight where it lives: the fifth
// element, the shared PMUs), and so does the optimizer's own (its 1st, in the home's section):
// sgd_0 reads the old weight where it writes the new one, an update in place, so no hand-off
// copies it (residency.updates_in_place); the gradient lives in the optimizer's buffer that loads it. saved.mm (an
// activation) has no reader in the step: it is for the host and crosses DRAM, like the batch,
// the loss and lr. On tiny (8 PMUs) the sections' 9 buffers fit together in 8 PMUs, one of
// them the weight's home shared by the forward and the optimizer (test/e2e/test_mlp.py has sections that do not
// fit together and keep their own placements).

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

// CHECK:      builtin.module attributes {rdu.target = "plasticine", rdu.resident = [
// CHECK-SAME:   ["net.0.weight", "optimizer", #builtin.int<3>, [], [["forward", #builtin.int<1>], ["optimizer", #builtin.int<0>]]],
// CHECK-SAME:   ["net.0.weight.grad", "optimizer", #builtin.int<1>, [], []]]}
// CHECK:        dataflow.section @forward
// CHECK:          %wb = pmu.buffer %w {{{.*}}, placement = #pmu.placement<at (0, 5), fill (0, 5)>}
// CHECK:        dataflow.section @optimizer
// CHECK:          %wb = pmu.buffer %w {{{.*}}, placement = #pmu.placement<at (0, 5), fill (0, 5)>}
// CHECK:          %ub = pmu.buffer %u {{{.*}}, placement = #pmu.placement<at (0, 5), fill (0, 6) -> (0, 5), store (0, 5)>}

// TINY:       builtin.module attributes {rdu.target = "tiny", rdu.resident = [
// TINY-SAME:    ["net.0.weight", "optimizer", #builtin.int<3>, [], [["forward", #builtin.int<1>], ["optimizer", #builtin.int<0>]]],
