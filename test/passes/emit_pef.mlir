// RUN: rdu-opt %s -p 'emit-pef{output="%t"}' > /dev/null
// RUN: rdu-pef %t | filecheck %s
// RUN: rdu-opt %s -p 'emit-pef{output="%t.again"}' > /dev/null
// RUN: cmp %t %t.again

// emit-pef writes a placed module (here: the output of place-and-route on tiny) as a PEF and
// leaves the IR alone. The symbols are every section's argument and result names in order of
// first appearance; metadata comes from the module's rdu.* attributes (rdu.target from
// place-and-route picks the target); each section lists its PMUs (loaded from a DRAM symbol or
// written by a PCU), its PCUs in IR order with their stages numbered inputs first, its routes
// (fills, PCU ports, then stores of the yielded PMUs) and its outputs. `matmul_0` is yielded
// twice (output.0 and saved.mm): one store route, two outputs. The optimizer's `lr` (strides
// [0,0]: one address at every point) is a register port, whose route is on tiny's scalar
// network (`(scalar)`). The same module gives the same bytes every time.

builtin.module attributes {rdu.model_name = "tiny_mlp", rdu.batch_size = 2 : i64, rdu.compile_flags = ["--arch=tiny", "-b", "2"], rdu.source_hash = "5eed", rdu.optimizer = "sgd", rdu.compiler_version = "0.1.0+test", rdu.target = "tiny"} {
  dataflow.section @forward forward attributes {arg_names = ["input.0", "net.0.weight", "target.0"], arg_roles = [#dataflow<role input>, #dataflow<role parameter>, #dataflow<role label>], result_names = ["output.0", "saved.mm", "loss"], result_roles = [#dataflow<role output>, #dataflow<role activation>, #dataflow<role loss>]} {
  ^bb0(%x: tensor<2x4xf32>, %w: tensor<4x4xf32>, %t: tensor<2x4xf32>):
    %xb = pmu.buffer %x {name = "input.0", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64, placement = #pmu.placement<at (0, 1), fill (0, 1)>} : tensor<2x4xf32> -> memref<2x4xf32>
    %wb = pmu.buffer %w {name = "net.0.weight", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 4 : i64, placement = #pmu.placement<at (0, 3), fill (0, 3)>} : tensor<4x4xf32> -> memref<4x4xf32>
    %mm = pcu.unit @matmul_0 (%xb, %wb) space [2, 4, 4] tile [2, 4, 4] lanes 4 ins [#rdu_tile.access<0 : [4, 0, 1]>, #rdu_tile.access<0 : [0, 1, 4]>] out #rdu_tile.access<0 : [4, 1, 0]> combiner add placed #pcu.placement<at (0, 2), routes [(0, 1) -> (0, 2), (0, 3) -> (0, 2)]> : (memref<2x4xf32>, memref<4x4xf32>) -> tensor<2x4xf32> {
    ^bb0(%a: f32, %b: f32):
      %p = pcu.stage mul(%a, %b) : (f32, f32) -> f32
      pcu.yield %p : f32
    } loc("model.py":12:0)
    %mmb = pmu.buffer %mm {name = "matmul_0", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64, placement = #pmu.placement<at (1, 2), fill (0, 2) -> (1, 2), store (1, 2) -> (0, 2)>} : tensor<2x4xf32> -> memref<2x4xf32>
    %tb = pmu.buffer %t {name = "target.0", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64, placement = #pmu.placement<at (1, 0), fill (0, 0) -> (1, 0)>} : tensor<2x4xf32> -> memref<2x4xf32>
    %l = pcu.unit @mse_1 (%mmb, %tb) space [2, 4] tile [2, 4] lanes 4 ins [#rdu_tile.access<0 : [4, 1]>, #rdu_tile.access<0 : [4, 1]>] out #rdu_tile.access<0 : [0, 0]> combiner add placed #pcu.placement<at (1, 1), routes [(1, 2) -> (1, 1), (1, 0) -> (1, 1)]> : (memref<2x4xf32>, memref<2x4xf32>) -> tensor<f32> {
    ^bb0(%a: f32, %b: f32):
      %d = pcu.stage sub(%a, %b) : (f32, f32) -> f32
      %s = pcu.stage mul(%d, %d) : (f32, f32) -> f32
      pcu.yield %s : f32
    } loc(callsite("model.py":20:0 at "train.py":3:0))
    %lb = pmu.buffer %l {name = "mse_1", tile_bytes = 4 : i64, nbuf = 1 : i64, banks = 1 : i64, placement = #pmu.placement<at (2, 1), fill (1, 1) -> (2, 1), store (2, 1) -> (1, 1) -> (0, 1)>} : tensor<f32> -> memref<f32>
    dataflow.yield %mmb, %mmb, %lb : memref<2x4xf32>, memref<2x4xf32>, memref<f32>
  }
  dataflow.section @backward backward attributes {arg_names = ["saved.mm", "target.0", "input.0"], arg_roles = [#dataflow<role activation>, #dataflow<role label>, #dataflow<role input>], result_names = ["net.0.weight.grad"], result_roles = [#dataflow<role gradient>]} {
  ^bb0(%mm: tensor<2x4xf32>, %t: tensor<2x4xf32>, %x: tensor<2x4xf32>):
    %mmb = pmu.buffer %mm {name = "saved.mm", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64, placement = #pmu.placement<at (0, 1), fill (0, 1)>} : tensor<2x4xf32> -> memref<2x4xf32>
    %tb = pmu.buffer %t {name = "target.0", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64, placement = #pmu.placement<at (0, 3), fill (0, 3)>} : tensor<2x4xf32> -> memref<2x4xf32>
    %d = pcu.unit @mse_1_grad (%mmb, %tb) space [2, 4] tile [2, 4] lanes 4 ins [#rdu_tile.access<0 : [4, 1]>, #rdu_tile.access<0 : [4, 1]>] out #rdu_tile.access<0 : [4, 1]> combiner none placed #pcu.placement<at (0, 2), routes [(0, 1) -> (0, 2), (0, 3) -> (0, 2)]> : (memref<2x4xf32>, memref<2x4xf32>) -> tensor<2x4xf32> {
    ^bb0(%a: f32, %b: f32):
      %two = pcu.const 2.000000e+00 : f32
      %s = pcu.stage sub(%a, %b) : (f32, f32) -> f32
      %g = pcu.stage mul(%two, %s) : (f32, f32) -> f32
      %i = pcu.counter 0 : i64
      %one = pcu.const 1 : i64
      %lt = pcu.stage lt(%i, %one) : (i64, i64) -> i1
      %zero = pcu.const 0.000000e+00 : f32
      %r = pcu.stage select(%lt, %g, %zero) : (i1, f32, f32) -> f32
      pcu.yield %r : f32
    } loc("model.py":20:0)
    %db = pmu.buffer %d {name = "mse_1_grad", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64, placement = #pmu.placement<at (1, 2), fill (0, 2) -> (1, 2)>} : tensor<2x4xf32> -> memref<2x4xf32>
    %xb = pmu.buffer %x {name = "input.0", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64, placement = #pmu.placement<at (1, 0), fill (0, 0) -> (1, 0)>} : tensor<2x4xf32> -> memref<2x4xf32>
    %g = pcu.unit @matmul_0_grad (%xb, %db) space [4, 4, 2] tile [4, 4, 2] lanes 4 ins [#rdu_tile.access<0 : [1, 0, 4]>, #rdu_tile.access<0 : [0, 1, 4]>] out #rdu_tile.access<0 : [4, 1, 0]> combiner add placed #pcu.placement<at (1, 1), routes [(1, 0) -> (1, 1), (1, 2) -> (1, 1)]> : (memref<2x4xf32>, memref<2x4xf32>) -> tensor<4x4xf32> {
    ^bb0(%a: f32, %b: f32):
      %p = pcu.stage mul(%a, %b) : (f32, f32) -> f32
      pcu.yield %p : f32
    } loc("model.py":12:0)
    %gb = pmu.buffer %g {name = "matmul_0_grad", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 4 : i64, placement = #pmu.placement<at (2, 1), fill (1, 1) -> (2, 1), store (2, 1) -> (1, 1) -> (0, 1)>} : tensor<4x4xf32> -> memref<4x4xf32>
    dataflow.yield %gb : memref<4x4xf32>
  }
  dataflow.section @optimizer optimizer attributes {arg_names = ["net.0.weight", "net.0.weight.grad", "lr"], arg_roles = [#dataflow<role parameter>, #dataflow<role gradient>, #dataflow<role hyperparameter>], result_names = ["net.0.weight"], result_roles = [#dataflow<role parameter>]} {
  ^bb0(%w: tensor<4x4xf32>, %g: tensor<4x4xf32>, %lr: tensor<f32>):
    %wb = pmu.buffer %w {name = "net.0.weight", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 4 : i64, placement = #pmu.placement<at (1, 0), fill (0, 0) -> (1, 0)>} : tensor<4x4xf32> -> memref<4x4xf32>
    %gb = pmu.buffer %g {name = "net.0.weight.grad", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 4 : i64, placement = #pmu.placement<at (0, 1), fill (0, 1)>} : tensor<4x4xf32> -> memref<4x4xf32>
    %lrb = pmu.buffer %lr {name = "lr", tile_bytes = 4 : i64, nbuf = 1 : i64, banks = 1 : i64, placement = #pmu.placement<at (2, 1), fill (0, 1) -> (1, 1) -> (2, 1)>} : tensor<f32> -> memref<f32>
    %u = pcu.unit @sgd_0 (%wb, %gb, %lrb) space [4, 4] tile [4, 4] lanes 4 ins [#rdu_tile.access<0 : [4, 1]>, #rdu_tile.access<0 : [4, 1]>, #rdu_tile.access<0 : [0, 0]>] out #rdu_tile.access<0 : [4, 1]> combiner none placed #pcu.placement<at (1, 1), routes [(1, 0) -> (1, 1), (0, 1) -> (1, 1), (2, 1) -> (1, 1)]> : (memref<4x4xf32>, memref<4x4xf32>, memref<f32>) -> tensor<4x4xf32> {
    ^bb0(%a: f32, %b: f32, %c: f32):
      %s = pcu.stage mul(%c, %b) : (f32, f32) -> f32
      %n = pcu.stage sub(%a, %s) : (f32, f32) -> f32
      pcu.yield %n : f32
    }
    %ub = pmu.buffer %u {name = "sgd_0", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 4 : i64, placement = #pmu.placement<at (1, 2), fill (1, 1) -> (1, 2), store (1, 2) -> (0, 2)>} : tensor<4x4xf32> -> memref<4x4xf32>
    dataflow.yield %ub : memref<4x4xf32>
  }
}

// CHECK:      pef: target tiny, training
// CHECK-NEXT: target: 4x4 grid, PCU 4 lanes x 4 stages, PMU 16384 B in 4 banks, 1.0 GHz, 2 streams a link, 16 B a stream a cycle, DRAM 4.0 GB/s, DRAM latency 20.0 ns, section load 50.0 ns
// CHECK-NEXT: meta: model tiny_mlp, batch 2, optimizer sgd, compiler 0.1.0+test, flags [--arch=tiny -b 2], source sha256 5eed
// CHECK-NEXT: symbol 0: input.0 f32[2,4] input
// CHECK-NEXT: symbol 1: net.0.weight f32[4,4] parameter
// CHECK-NEXT: symbol 2: target.0 f32[2,4] label
// CHECK-NEXT: symbol 3: output.0 f32[2,4] output
// CHECK-NEXT: symbol 4: saved.mm f32[2,4] activation
// CHECK-NEXT: symbol 5: loss f32[] loss
// CHECK-NEXT: symbol 6: net.0.weight.grad f32[4,4] gradient
// CHECK-NEXT: symbol 7: lr f32[] hyperparameter

// CHECK-NEXT: section forward (forward): 2 PCUs, 5 PMUs, 11 routes
// CHECK-NEXT:   input input.0
// CHECK-NEXT:   input net.0.weight
// CHECK-NEXT:   input target.0
// CHECK-NEXT:   pmu 0 input.0 at (0,1) f32[2,4] tile 32 B x2 banks 4 <- dram input.0
// CHECK-NEXT:   pmu 1 net.0.weight at (0,3) f32[4,4] tile 64 B x2 banks 4 <- dram net.0.weight
// CHECK-NEXT:   pmu 2 matmul_0 at (1,2) f32[2,4] tile 32 B x2 banks 4 <- pcu 0
// CHECK-NEXT:   pmu 3 target.0 at (1,0) f32[2,4] tile 32 B x2 banks 4 <- dram target.0
// CHECK-NEXT:   pmu 4 mse_1 at (2,1) f32[] tile 4 B x1 banks 1 <- pcu 1
// CHECK-NEXT:   pcu 0 matmul_0 at (0,2) space [2,4,4] tile [2,4,4] lanes 4 f32 combiner add loc model.py:12
// CHECK-NEXT:     v0 = in pmu 0 offset 0 strides [4,0,1]
// CHECK-NEXT:     v1 = in pmu 1 offset 0 strides [0,1,4]
// CHECK-NEXT:     v2 = mul v0 v1 : f32
// CHECK-NEXT:     out v2 -> pmu 2 offset 0 strides [4,1,0]
// CHECK-NEXT:   pcu 1 mse_1 at (1,1) space [2,4] tile [2,4] lanes 4 f32 combiner add loc model.py:20
// CHECK-NEXT:     v0 = in pmu 2 offset 0 strides [4,1]
// CHECK-NEXT:     v1 = in pmu 3 offset 0 strides [4,1]
// CHECK-NEXT:     v2 = sub v0 v1 : f32
// CHECK-NEXT:     v3 = mul v2 v2 : f32
// CHECK-NEXT:     out v3 -> pmu 4 offset 0 strides [0,0]
// CHECK-NEXT:   route dram 0 -> pmu 0: (0,1)
// CHECK-NEXT:   route dram 1 -> pmu 1: (0,3)
// CHECK-NEXT:   route pmu 0 -> pcu 0: (0,1) (0,2)
// CHECK-NEXT:   route pmu 1 -> pcu 0: (0,3) (0,2)
// CHECK-NEXT:   route pcu 0 -> pmu 2: (0,2) (1,2)
// CHECK-NEXT:   route dram 2 -> pmu 3: (0,0) (1,0)
// CHECK-NEXT:   route pmu 2 -> pcu 1: (1,2) (1,1)
// CHECK-NEXT:   route pmu 3 -> pcu 1: (1,0) (1,1)
// CHECK-NEXT:   route pcu 1 -> pmu 4: (1,1) (2,1)
// CHECK-NEXT:   route pmu 2 -> dram 3: (1,2) (0,2)
// CHECK-NEXT:   route pmu 4 -> dram 5: (2,1) (1,1) (0,1)
// CHECK-NEXT:   output output.0 <- pmu 2
// CHECK-NEXT:   output saved.mm <- pmu 2
// CHECK-NEXT:   output loss <- pmu 4

// CHECK-NEXT: section backward (backward): 2 PCUs, 5 PMUs, 10 routes
// CHECK-NEXT:   input saved.mm
// CHECK-NEXT:   input target.0
// CHECK-NEXT:   input input.0
// CHECK-NEXT:   pmu 0 saved.mm at (0,1) f32[2,4] tile 32 B x2 banks 4 <- dram saved.mm
// CHECK-NEXT:   pmu 1 target.0 at (0,3) f32[2,4] tile 32 B x2 banks 4 <- dram target.0
// CHECK-NEXT:   pmu 2 mse_1_grad at (1,2) f32[2,4] tile 32 B x2 banks 4 <- pcu 0
// CHECK-NEXT:   pmu 3 input.0 at (1,0) f32[2,4] tile 32 B x2 banks 4 <- dram input.0
// CHECK-NEXT:   pmu 4 matmul_0_grad at (2,1) f32[4,4] tile 64 B x2 banks 4 <- pcu 1
// CHECK-NEXT:   pcu 0 mse_1_grad at (0,2) space [2,4] tile [2,4] lanes 4 f32 combiner none loc model.py:20
// CHECK-NEXT:     v0 = in pmu 0 offset 0 strides [4,1]
// CHECK-NEXT:     v1 = in pmu 1 offset 0 strides [4,1]
// CHECK-NEXT:     v2 = const 2.0  : f32
// CHECK-NEXT:     v3 = sub v0 v1 : f32
// CHECK-NEXT:     v4 = mul v2 v3 : f32
// CHECK-NEXT:     v5 = counter 0  : i64
// CHECK-NEXT:     v6 = const 1  : i64
// CHECK-NEXT:     v7 = lt v5 v6 : i1
// CHECK-NEXT:     v8 = const 0.0  : f32
// CHECK-NEXT:     v9 = select v7 v4 v8 : f32
// CHECK-NEXT:     out v9 -> pmu 2 offset 0 strides [4,1]
// CHECK-NEXT:   pcu 1 matmul_0_grad at (1,1) space [4,4,2] tile [4,4,2] lanes 4 f32 combiner add loc model.py:12
// CHECK-NEXT:     v0 = in pmu 3 offset 0 strides [1,0,4]
// CHECK-NEXT:     v1 = in pmu 2 offset 0 strides [0,1,4]
// CHECK-NEXT:     v2 = mul v0 v1 : f32
// CHECK-NEXT:     out v2 -> pmu 4 offset 0 strides [4,1,0]
// CHECK-NEXT:   route dram 4 -> pmu 0: (0,1)
// CHECK-NEXT:   route dram 2 -> pmu 1: (0,3)
// CHECK-NEXT:   route pmu 0 -> pcu 0: (0,1) (0,2)
// CHECK-NEXT:   route pmu 1 -> pcu 0: (0,3) (0,2)
// CHECK-NEXT:   route pcu 0 -> pmu 2: (0,2) (1,2)
// CHECK-NEXT:   route dram 0 -> pmu 3: (0,0) (1,0)
// CHECK-NEXT:   route pmu 3 -> pcu 1: (1,0) (1,1)
// CHECK-NEXT:   route pmu 2 -> pcu 1: (1,2) (1,1)
// CHECK-NEXT:   route pcu 1 -> pmu 4: (1,1) (2,1)
// CHECK-NEXT:   route pmu 4 -> dram 6: (2,1) (1,1) (0,1)
// CHECK-NEXT:   output net.0.weight.grad <- pmu 4

// CHECK-NEXT: section optimizer (optimizer): 1 PCUs, 4 PMUs, 8 routes
// CHECK-NEXT:   input net.0.weight
// CHECK-NEXT:   input net.0.weight.grad
// CHECK-NEXT:   input lr
// CHECK-NEXT:   pmu 0 net.0.weight at (1,0) f32[4,4] tile 64 B x2 banks 4 <- dram net.0.weight
// CHECK-NEXT:   pmu 1 net.0.weight.grad at (0,1) f32[4,4] tile 64 B x2 banks 4 <- dram net.0.weight.grad
// CHECK-NEXT:   pmu 2 lr at (2,1) f32[] tile 4 B x1 banks 1 <- dram lr
// CHECK-NEXT:   pmu 3 sgd_0 at (1,2) f32[4,4] tile 64 B x2 banks 4 <- pcu 0
// CHECK-NEXT:   pcu 0 sgd_0 at (1,1) space [4,4] tile [4,4] lanes 4 f32 combiner none loc
// CHECK-NEXT:     v0 = in pmu 0 offset 0 strides [4,1]
// CHECK-NEXT:     v1 = in pmu 1 offset 0 strides [4,1]
// CHECK-NEXT:     v2 = in pmu 2 offset 0 strides [0,0]
// CHECK-NEXT:     v3 = mul v2 v1 : f32
// CHECK-NEXT:     v4 = sub v0 v3 : f32
// CHECK-NEXT:     out v4 -> pmu 3 offset 0 strides [4,1]
// CHECK-NEXT:   route dram 1 -> pmu 0: (0,0) (1,0)
// CHECK-NEXT:   route dram 6 -> pmu 1: (0,1)
// CHECK-NEXT:   route dram 7 -> pmu 2: (0,1) (1,1) (2,1)
// CHECK-NEXT:   route pmu 0 -> pcu 0: (1,0) (1,1)
// CHECK-NEXT:   route pmu 1 -> pcu 0: (0,1) (1,1)
// CHECK-NEXT:   route pmu 2 -> pcu 0 (scalar): (2,1) (1,1)
// CHECK-NEXT:   route pcu 0 -> pmu 3: (1,1) (1,2)
// CHECK-NEXT:   route pmu 3 -> dram 1: (1,2) (0,2)
// CHECK-NEXT:   output net.0.weight <- pmu 3
