// RUN: rdu-opt %s --split-input-file --verify-diagnostics -p 'convert-rdu-tile-to-pcu-pmu{target=plasticine}' | filecheck %s
// RUN: rdu-opt %s --split-input-file --verify-diagnostics -p 'convert-rdu-tile-to-pcu-pmu{target=plasticine}' --print-debuginfo | filecheck %s --check-prefix=LOC

// The linear + relu + log-softmax section after convert-dataflow-to-rdu-tile: a PMU per DRAM
// argument (named after it), a PCU + PMU per kernel (named after the kernel), yields of PMUs.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["net.0.weight", "net.0.bias", "input.0"], arg_roles = [#dataflow<role parameter>, #dataflow<role parameter>, #dataflow<role input>], result_names = ["output.0", "saved.relu", "saved.weight_t", "net.0.bias"], result_roles = [#dataflow<role output>, #dataflow<role activation>, #dataflow<role activation>, #dataflow<role parameter>]} {
  ^bb0(%w: tensor<128x64xf32>, %b: tensor<128xf32>, %x: tensor<16x64xf32>):
    %mm = rdu_tile.kernel @matmul_0 (%x, %w) space [16, 128, 64] tile [16, 128, 64] ins [#rdu_tile.access<0 : [64, 0, 1]>, #rdu_tile.access<0 : [0, 64, 1]>] out #rdu_tile.access<0 : [128, 1, 0]> combiner add : (tensor<16x64xf32>, tensor<128x64xf32>) -> tensor<16x128xf32> {
    ^bb0(%0: f32, %1: f32):
      %2 = arith.mulf %0, %1 : f32
      rdu_tile.yield %2 : f32
    } loc("model.py":10:0)
    %h = rdu_tile.kernel @add_1 (%mm, %b) space [16, 128] tile [16, 128] ins [#rdu_tile.access<0 : [128, 1]>, #rdu_tile.access<0 : [0, 1]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (tensor<16x128xf32>, tensor<128xf32>) -> tensor<16x128xf32> {
    ^bb0(%0: f32, %1: f32):
      %2 = arith.addf %0, %1 : f32
      rdu_tile.yield %2 : f32
    } loc("model.py":10:0)
    %r = rdu_tile.kernel @relu_2 (%h) space [16, 128] tile [16, 128] ins [#rdu_tile.access<0 : [128, 1]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (tensor<16x128xf32>) -> tensor<16x128xf32> {
    ^bb0(%0: f32):
      %1 = arith.constant 0.000000e+00 : f32
      %2 = arith.maximumf %0, %1 : f32
      rdu_tile.yield %2 : f32
    } loc("model.py":11:0)
    %m = rdu_tile.kernel @max_3 (%r) space [16, 128] tile [16, 128] ins [#rdu_tile.access<0 : [128, 1]>] out #rdu_tile.access<0 : [1, 0]> combiner max : (tensor<16x128xf32>) -> tensor<16x1xf32> {
    ^bb0(%0: f32):
      rdu_tile.yield %0 : f32
    } loc("model.py":12:0)
    %s = rdu_tile.kernel @sub_4 (%r, %m) space [16, 128] tile [16, 128] ins [#rdu_tile.access<0 : [128, 1]>, #rdu_tile.access<0 : [1, 0]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (tensor<16x128xf32>, tensor<16x1xf32>) -> tensor<16x128xf32> {
    ^bb0(%0: f32, %1: f32):
      %2 = arith.subf %0, %1 : f32
      rdu_tile.yield %2 : f32
    } loc("model.py":12:0)
    %e = rdu_tile.kernel @exp_5 (%s) space [16, 128] tile [16, 128] ins [#rdu_tile.access<0 : [128, 1]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (tensor<16x128xf32>) -> tensor<16x128xf32> {
    ^bb0(%0: f32):
      %1 = math.exp %0 : f32
      rdu_tile.yield %1 : f32
    } loc("model.py":12:0)
    %se = rdu_tile.kernel @sum_6 (%e) space [16, 128] tile [16, 128] ins [#rdu_tile.access<0 : [128, 1]>] out #rdu_tile.access<0 : [1, 0]> combiner add : (tensor<16x128xf32>) -> tensor<16xf32> {
    ^bb0(%0: f32):
      rdu_tile.yield %0 : f32
    } loc("model.py":12:0)
    %l = rdu_tile.kernel @log_7 (%se) space [16] tile [16] ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (tensor<16xf32>) -> tensor<16xf32> {
    ^bb0(%0: f32):
      %1 = math.log %0 : f32
      rdu_tile.yield %1 : f32
    } loc("model.py":12:0)
    %o = rdu_tile.kernel @sub_8 (%s, %l) space [16, 128] tile [16, 128] ins [#rdu_tile.access<0 : [128, 1]>, #rdu_tile.access<0 : [1, 0]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (tensor<16x128xf32>, tensor<16xf32>) -> tensor<16x128xf32> {
    ^bb0(%0: f32, %1: f32):
      %2 = arith.subf %0, %1 : f32
      rdu_tile.yield %2 : f32
    } loc("model.py":12:0)
    %0 = rdu_tile.kernel @copy_9 (%w) space [64, 128] tile [64, 128] ins [#rdu_tile.access<0 : [1, 64]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (tensor<128x64xf32>) -> tensor<64x128xf32> {
    ^bb0(%1: f32):
      rdu_tile.yield %1 : f32
    } loc("model.py":10:0)
    dataflow.yield %o, %r, %0, %b : tensor<16x128xf32>, tensor<16x128xf32>, tensor<64x128xf32>, tensor<128xf32>
  }
}

// Banking: the matmul's vectors walk the weight down its columns (lanes over n, stride 64) and
// the input down its rows (its 6 unrolled rows m, stride 64); max_3 and sum_6 read relu_2 and
// exp_5 down their columns (stride 128). Those PMUs get that bank_skew.
// CHECK:      builtin.module {
// CHECK-NEXT:   dataflow.section @forward forward attributes {arg_names = ["net.0.weight", "net.0.bias", "input.0"], arg_roles = [#dataflow<role parameter>, #dataflow<role parameter>, #dataflow<role input>], result_names = ["output.0", "saved.relu", "saved.weight_t", "net.0.bias"], result_roles = [#dataflow<role output>, #dataflow<role activation>, #dataflow<role activation>, #dataflow<role parameter>]} {
// CHECK-NEXT:   ^bb0(%w: tensor<128x64xf32>, %b: tensor<128xf32>, %x: tensor<16x64xf32>):
// CHECK-NEXT:     %net_0_weight_pmu = pmu.buffer %w {name = "net.0.weight", tile_bytes = 32768 : i64, nbuf = 2 : i64, banks = 16 : i64, bank_skew = 64 : i64} : tensor<128x64xf32> -> memref<128x64xf32>
// CHECK-NEXT:     %net_0_bias_pmu = pmu.buffer %b {name = "net.0.bias", tile_bytes = 512 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<128xf32> -> memref<128xf32>
// CHECK-NEXT:     %input_0_pmu = pmu.buffer %x {name = "input.0", tile_bytes = 4096 : i64, nbuf = 2 : i64, banks = 16 : i64, bank_skew = 64 : i64} : tensor<16x64xf32> -> memref<16x64xf32>
// CHECK-NEXT:     %mm = pcu.unit @matmul_0 (%input_0_pmu, %net_0_weight_pmu) space [16, 128, 64] tile [16, 128, 64] lanes 16 ins [#rdu_tile.access<0 : [64, 0, 1]>, #rdu_tile.access<0 : [0, 64, 1]>] out #rdu_tile.access<0 : [128, 1, 0]> combiner add : (memref<16x64xf32>, memref<128x64xf32>) -> tensor<16x128xf32> {
// CHECK-NEXT:     ^bb0(%0: f32, %1: f32):
// CHECK-NEXT:       %2 = pcu.stage mul(%0, %1) : (f32, f32) -> f32
// CHECK-NEXT:       pcu.yield %2 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %matmul_0_pmu = pmu.buffer %mm {name = "matmul_0", tile_bytes = 8192 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<16x128xf32> -> memref<16x128xf32>
// CHECK-NEXT:     %h = pcu.unit @add_1 (%matmul_0_pmu, %net_0_bias_pmu) space [16, 128] tile [16, 128] lanes 16 ins [#rdu_tile.access<0 : [128, 1]>, #rdu_tile.access<0 : [0, 1]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (memref<16x128xf32>, memref<128xf32>) -> tensor<16x128xf32> {
// CHECK-NEXT:     ^bb0(%0: f32, %1: f32):
// CHECK-NEXT:       %2 = pcu.stage add(%0, %1) : (f32, f32) -> f32
// CHECK-NEXT:       pcu.yield %2 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %add_1_pmu = pmu.buffer %h {name = "add_1", tile_bytes = 8192 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<16x128xf32> -> memref<16x128xf32>
// CHECK-NEXT:     %r = pcu.unit @relu_2 (%add_1_pmu) space [16, 128] tile [16, 128] lanes 16 ins [#rdu_tile.access<0 : [128, 1]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (memref<16x128xf32>) -> tensor<16x128xf32> {
// CHECK-NEXT:     ^bb0(%0: f32):
// CHECK-NEXT:       %1 = pcu.const 0.000000e+00 : f32
// CHECK-NEXT:       %2 = pcu.stage max(%0, %1) : (f32, f32) -> f32
// CHECK-NEXT:       pcu.yield %2 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %relu_2_pmu = pmu.buffer %r {name = "relu_2", tile_bytes = 8192 : i64, nbuf = 2 : i64, banks = 16 : i64, bank_skew = 128 : i64} : tensor<16x128xf32> -> memref<16x128xf32>
// CHECK-NEXT:     %m = pcu.unit @max_3 (%relu_2_pmu) space [16, 128] tile [16, 128] lanes 16 ins [#rdu_tile.access<0 : [128, 1]>] out #rdu_tile.access<0 : [1, 0]> combiner max : (memref<16x128xf32>) -> tensor<16x1xf32> {
// CHECK-NEXT:     ^bb0(%0: f32):
// CHECK-NEXT:       pcu.yield %0 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %max_3_pmu = pmu.buffer %m {name = "max_3", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<16x1xf32> -> memref<16x1xf32>
// CHECK-NEXT:     %s = pcu.unit @sub_4 (%relu_2_pmu, %max_3_pmu) space [16, 128] tile [16, 128] lanes 16 ins [#rdu_tile.access<0 : [128, 1]>, #rdu_tile.access<0 : [1, 0]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (memref<16x128xf32>, memref<16x1xf32>) -> tensor<16x128xf32> {
// CHECK-NEXT:     ^bb0(%0: f32, %1: f32):
// CHECK-NEXT:       %2 = pcu.stage sub(%0, %1) : (f32, f32) -> f32
// CHECK-NEXT:       pcu.yield %2 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %sub_4_pmu = pmu.buffer %s {name = "sub_4", tile_bytes = 8192 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<16x128xf32> -> memref<16x128xf32>
// CHECK-NEXT:     %e = pcu.unit @exp_5 (%sub_4_pmu) space [16, 128] tile [16, 128] lanes 16 ins [#rdu_tile.access<0 : [128, 1]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (memref<16x128xf32>) -> tensor<16x128xf32> {
// CHECK-NEXT:     ^bb0(%0: f32):
// CHECK-NEXT:       %1 = pcu.stage exp(%0) : (f32) -> f32
// CHECK-NEXT:       pcu.yield %1 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %exp_5_pmu = pmu.buffer %e {name = "exp_5", tile_bytes = 8192 : i64, nbuf = 2 : i64, banks = 16 : i64, bank_skew = 128 : i64} : tensor<16x128xf32> -> memref<16x128xf32>
// CHECK-NEXT:     %se = pcu.unit @sum_6 (%exp_5_pmu) space [16, 128] tile [16, 128] lanes 16 ins [#rdu_tile.access<0 : [128, 1]>] out #rdu_tile.access<0 : [1, 0]> combiner add : (memref<16x128xf32>) -> tensor<16xf32> {
// CHECK-NEXT:     ^bb0(%0: f32):
// CHECK-NEXT:       pcu.yield %0 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %sum_6_pmu = pmu.buffer %se {name = "sum_6", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<16xf32> -> memref<16xf32>
// CHECK-NEXT:     %l = pcu.unit @log_7 (%sum_6_pmu) space [16] tile [16] lanes 16 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<16xf32>) -> tensor<16xf32> {
// CHECK-NEXT:     ^bb0(%0: f32):
// CHECK-NEXT:       %1 = pcu.stage log(%0) : (f32) -> f32
// CHECK-NEXT:       pcu.yield %1 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %log_7_pmu = pmu.buffer %l {name = "log_7", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<16xf32> -> memref<16xf32>
// CHECK-NEXT:     %o = pcu.unit @sub_8 (%sub_4_pmu, %log_7_pmu) space [16, 128] tile [16, 128] lanes 16 ins [#rdu_tile.access<0 : [128, 1]>, #rdu_tile.access<0 : [1, 0]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (memref<16x128xf32>, memref<16xf32>) -> tensor<16x128xf32> {
// CHECK-NEXT:     ^bb0(%0: f32, %1: f32):
// CHECK-NEXT:       %2 = pcu.stage sub(%0, %1) : (f32, f32) -> f32
// CHECK-NEXT:       pcu.yield %2 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %sub_8_pmu = pmu.buffer %o {name = "sub_8", tile_bytes = 8192 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<16x128xf32> -> memref<16x128xf32>
// CHECK-NEXT:     %0 = pcu.unit @copy_9 (%net_0_weight_pmu) space [64, 128] tile [64, 128] lanes 16 ins [#rdu_tile.access<0 : [1, 64]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (memref<128x64xf32>) -> tensor<64x128xf32> {
// CHECK-NEXT:     ^bb0(%1: f32):
// CHECK-NEXT:       pcu.yield %1 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %copy_9_pmu = pmu.buffer %0 {name = "copy_9", tile_bytes = 32768 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<64x128xf32> -> memref<64x128xf32>
// CHECK-NEXT:     dataflow.yield %sub_8_pmu, %relu_2_pmu, %copy_9_pmu, %net_0_bias_pmu : memref<16x128xf32>, memref<16x128xf32>, memref<64x128xf32>, memref<128xf32>
// CHECK-NEXT:   }
// CHECK-NEXT: }

// Units and the buffers they fill keep the kernel's location; a DRAM buffer takes its first
// reader's.
// LOC: pmu.buffer %w {name = "net.0.weight", {{.*}} loc("model.py":10:0)
// LOC: pcu.unit @matmul_0
// LOC: } loc("model.py":10:0)
// LOC-NEXT: pmu.buffer %mm {name = "matmul_0", {{.*}} loc("model.py":10:0)
// LOC: pcu.unit @relu_2
// LOC: } loc("model.py":11:0)

// -----


// An argument nothing reads gets no PMU; one yielded as is still goes through one. Stages:
// xori with true is "not", index values become i64 counters, an index_cast to i64 is no stage,
// comparisons map by predicate.

builtin.module {
  dataflow.section @optimizer optimizer attributes {arg_names = ["lr", "w", "unused"], arg_roles = [#dataflow<role hyperparameter>, #dataflow<role parameter>, #dataflow<role parameter>], result_names = ["w", "lr.copy", "mask"], result_roles = [#dataflow<role parameter>, #dataflow<role hyperparameter>, #dataflow<role activation>]} {
  ^bb0(%lr: tensor<f32>, %w: tensor<4x6xf32>, %u: tensor<3xf32>):
    %m = rdu_tile.kernel @mask_0 (%w) space [4, 6] tile [4, 6] ins [#rdu_tile.access<0 : [6, 1]>] out #rdu_tile.access<0 : [6, 1]> combiner none : (tensor<4x6xf32>) -> tensor<4x6xi1> {
    ^bb0(%x: f32):
      %i = rdu_tile.index 0 : index
      %j = arith.index_cast %i : index to i64
      %t = arith.constant true
      %zero = arith.constant 0 : i64
      %c = arith.cmpi sgt, %j, %zero : i64
      %n = arith.xori %c, %t : i1
      %lt = arith.cmpf ult, %x, %x : f32
      %o = arith.xori %n, %lt : i1
      rdu_tile.yield %o : i1
    } loc("model.py":40:0)
    dataflow.yield %w, %lr, %m : tensor<4x6xf32>, tensor<f32>, tensor<4x6xi1>
  }
}

// CHECK:      builtin.module {
// CHECK-NEXT:   dataflow.section @optimizer optimizer attributes {arg_names = ["lr", "w", "unused"], arg_roles = [#dataflow<role hyperparameter>, #dataflow<role parameter>, #dataflow<role parameter>], result_names = ["w", "lr.copy", "mask"], result_roles = [#dataflow<role parameter>, #dataflow<role hyperparameter>, #dataflow<role activation>]} {
// CHECK-NEXT:   ^bb0(%lr: tensor<f32>, %w: tensor<4x6xf32>, %u: tensor<3xf32>):
// CHECK-NEXT:     %lr_pmu = pmu.buffer %lr {name = "lr", tile_bytes = 4 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<f32> -> memref<f32>
// CHECK-NEXT:     %w_pmu = pmu.buffer %w {name = "w", tile_bytes = 96 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x6xf32> -> memref<4x6xf32>
// CHECK-NEXT:     %m = pcu.unit @mask_0 (%w_pmu) space [4, 6] tile [4, 6] lanes 16 ins [#rdu_tile.access<0 : [6, 1]>] out #rdu_tile.access<0 : [6, 1]> combiner none : (memref<4x6xf32>) -> tensor<4x6xi1> {
// CHECK-NEXT:     ^bb0(%0: f32):
// CHECK-NEXT:       %1 = pcu.counter 0 : i64
// CHECK-NEXT:       %2 = pcu.const 0 : i64
// CHECK-NEXT:       %3 = pcu.stage gt(%1, %2) : (i64, i64) -> i1
// CHECK-NEXT:       %4 = pcu.stage not(%3) : (i1) -> i1
// CHECK-NEXT:       %5 = pcu.stage lt(%0, %0) : (f32, f32) -> i1
// CHECK-NEXT:       %6 = pcu.stage ne(%4, %5) : (i1, i1) -> i1
// CHECK-NEXT:       pcu.yield %6 : i1
// CHECK-NEXT:     }
// CHECK-NEXT:     %mask_0_pmu = pmu.buffer %m {name = "mask_0", tile_bytes = 24 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<4x6xi1> -> memref<4x6xi1>
// CHECK-NEXT:     dataflow.yield %w_pmu, %lr_pmu, %mask_0_pmu : memref<4x6xf32>, memref<f32>, memref<4x6xi1>
// CHECK-NEXT:   }
// CHECK-NEXT: }

// -----


// A body op without a PCU stage is an error that names the kernel and points at its line.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["x"], arg_roles = [#dataflow<role input>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
  ^bb0(%x: tensor<4xf32>):
    %y = rdu_tile.kernel @atan_0 (%x) space [4] tile [4] ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (tensor<4xf32>) -> tensor<4xf32> {
    ^bb0(%a: f32):
      %s = math.atan %a : f32
      rdu_tile.yield %s : f32
    } loc("model.py":8:0)
    dataflow.yield %y : tensor<4xf32>
  }
}

// CHECK: model.py:8: 'math.atan' in kernel @atan_0 has no PCU stage

// -----


// cos and sin: a PCU stage each.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["x"], arg_roles = [#dataflow<role input>], result_names = ["c", "s"], result_roles = [#dataflow<role output>, #dataflow<role output>]} {
  ^bb0(%x: tensor<8x4xf32>):
    %c = rdu_tile.kernel @cos_0 (%x) space [8, 4] tile [8, 4] ins [#rdu_tile.access<0 : [4, 1]>] out #rdu_tile.access<0 : [4, 1]> combiner none : (tensor<8x4xf32>) -> tensor<8x4xf32> {
    ^bb0(%0: f32):
      %1 = math.cos %0 : f32
      rdu_tile.yield %1 : f32
    }
    %s = rdu_tile.kernel @sin_1 (%x) space [8, 4] tile [8, 4] ins [#rdu_tile.access<0 : [4, 1]>] out #rdu_tile.access<0 : [4, 1]> combiner none : (tensor<8x4xf32>) -> tensor<8x4xf32> {
    ^bb0(%0: f32):
      %1 = math.sin %0 : f32
      rdu_tile.yield %1 : f32
    }
    dataflow.yield %c, %s : tensor<8x4xf32>, tensor<8x4xf32>
  }
}


// CHECK:      builtin.module {
// CHECK-NEXT:   dataflow.section @forward forward attributes {arg_names = ["x"], arg_roles = [#dataflow<role input>], result_names = ["c", "s"], result_roles = [#dataflow<role output>, #dataflow<role output>]} {
// CHECK-NEXT:   ^bb0(%x: tensor<8x4xf32>):
// CHECK-NEXT:     %x_pmu = pmu.buffer %x {name = "x", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<8x4xf32> -> memref<8x4xf32>
// CHECK-NEXT:     %c = pcu.unit @cos_0 (%x_pmu) space [8, 4] tile [8, 4] lanes 16 ins [#rdu_tile.access<0 : [4, 1]>] out #rdu_tile.access<0 : [4, 1]> combiner none : (memref<8x4xf32>) -> tensor<8x4xf32> {
// CHECK-NEXT:     ^bb0(%0: f32):
// CHECK-NEXT:       %1 = pcu.stage cos(%0) : (f32) -> f32
// CHECK-NEXT:       pcu.yield %1 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %cos_0_pmu = pmu.buffer %c {name = "cos_0", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<8x4xf32> -> memref<8x4xf32>
// CHECK-NEXT:     %s = pcu.unit @sin_1 (%x_pmu) space [8, 4] tile [8, 4] lanes 16 ins [#rdu_tile.access<0 : [4, 1]>] out #rdu_tile.access<0 : [4, 1]> combiner none : (memref<8x4xf32>) -> tensor<8x4xf32> {
// CHECK-NEXT:     ^bb0(%0: f32):
// CHECK-NEXT:       %1 = pcu.stage sin(%0) : (f32) -> f32
// CHECK-NEXT:       pcu.yield %1 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %sin_1_pmu = pmu.buffer %s {name = "sin_1", tile_bytes = 128 : i64, nbuf = 2 : i64, banks = 16 : i64} : tensor<8x4xf32> -> memref<8x4xf32>
// CHECK-NEXT:     dataflow.yield %cos_0_pmu, %sin_1_pmu : memref<8x4xf32>, memref<8x4xf32>
// CHECK-NEXT:   }
// CHECK-NEXT: }

// -----

// A bf16-mixed matmul: its operands widened and multiplied is the bf16 multiplier, one stage
// reading the bf16 operands (an exact f32 product, accumulated in f32); a widened value also
// read elsewhere keeps its cast for that reader.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a", "b"], arg_roles = [#dataflow<role input>, #dataflow<role input>], result_names = ["c", "d"], result_roles = [#dataflow<role output>, #dataflow<role output>]} {
  ^bb0(%a: tensor<4x8xbf16>, %b: tensor<8x2xbf16>):
    %c = rdu_tile.kernel @matmul_0 (%a, %b) space [4, 2, 8] tile [4, 2, 8] ins [#rdu_tile.access<0 : [8, 0, 1]>, #rdu_tile.access<0 : [0, 1, 2]>] out #rdu_tile.access<0 : [2, 1, 0]> combiner add : (tensor<4x8xbf16>, tensor<8x2xbf16>) -> tensor<4x2xf32> {
    ^bb0(%0: bf16, %1: bf16):
      %2 = arith.extf %0 : bf16 to f32
      %3 = arith.extf %1 : bf16 to f32
      %4 = arith.mulf %2, %3 : f32
      rdu_tile.yield %4 : f32
    }
    %d = rdu_tile.kernel @mul_1 (%a, %b) space [4, 2, 8] tile [4, 2, 8] ins [#rdu_tile.access<0 : [8, 0, 1]>, #rdu_tile.access<0 : [0, 1, 2]>] out #rdu_tile.access<0 : [2, 1, 0]> combiner add : (tensor<4x8xbf16>, tensor<8x2xbf16>) -> tensor<4x2xf32> {
    ^bb0(%0: bf16, %1: bf16):
      %2 = arith.extf %0 : bf16 to f32
      %3 = arith.extf %1 : bf16 to f32
      %4 = arith.mulf %2, %3 : f32
      %5 = arith.addf %4, %2 : f32
      rdu_tile.yield %5 : f32
    }
    dataflow.yield %c, %d : tensor<4x2xf32>, tensor<4x2xf32>
  }
}

// CHECK:      %c = pcu.unit @matmul_0
// CHECK-NEXT:   ^bb0(%0: bf16, %1: bf16):
// CHECK-NEXT:     %2 = pcu.stage mul(%0, %1) : (bf16, bf16) -> f32
// CHECK-NEXT:     pcu.yield %2 : f32
// CHECK-NEXT:   }
// CHECK:      %d = pcu.unit @mul_1
// CHECK-NEXT:   ^bb0(%0: bf16, %1: bf16):
// CHECK-NEXT:     %2 = pcu.stage cast(%0) : (bf16) -> f32
// CHECK-NEXT:     %3 = pcu.stage mul(%0, %1) : (bf16, bf16) -> f32
// CHECK-NEXT:     %4 = pcu.stage add(%3, %2) : (f32, f32) -> f32
// CHECK-NEXT:     pcu.yield %4 : f32
// CHECK-NEXT:   }
