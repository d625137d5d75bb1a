// RUN: rdu-opt %s --split-input-file --verify-diagnostics -p 'convert-dataflow-to-rdu-tile{target=plasticine}' | filecheck %s
// RUN: rdu-opt %s --split-input-file --verify-diagnostics -p 'convert-dataflow-to-rdu-tile{target=plasticine}' --print-debuginfo | filecheck %s --check-prefix=LOC
// RUN: rdu-opt %s --split-input-file --verify-diagnostics -p 'convert-dataflow-to-rdu-tile{target=tiny}' | filecheck %s --check-prefix=TINY

// A linear + relu + log-softmax section: one kernel per compute op, the transposed weight and
// the broadcast bias fold into strides, names are <kind>_<index>, locations carry over.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["net.0.weight", "net.0.bias", "input.0"], arg_roles = [#dataflow<role parameter>, #dataflow<role parameter>, #dataflow<role input>], result_names = ["output.0", "saved.relu", "saved.weight_t", "net.0.bias"], result_roles = [#dataflow<role output>, #dataflow<role activation>, #dataflow<role activation>, #dataflow<role parameter>]} {
  ^bb0(%w: tensor<128x64xf32>, %b: tensor<128xf32>, %x: tensor<16x64xf32>):
    %wt = dataflow.transpose %w perm [1, 0] : (tensor<128x64xf32>) -> tensor<64x128xf32> loc("model.py":10:0)
    %mm = dataflow.matmul %x, %wt : (tensor<16x64xf32>, tensor<64x128xf32>) -> tensor<16x128xf32> loc("model.py":10:0)
    %h = dataflow.pointwise add(%mm, %b) : (tensor<16x128xf32>, tensor<128xf32>) -> tensor<16x128xf32> loc("model.py":10:0)
    %r = dataflow.pointwise relu(%h) : (tensor<16x128xf32>) -> tensor<16x128xf32> loc("model.py":11:0)
    %m = dataflow.reduce max %r dims [1] : (tensor<16x128xf32>) -> tensor<16x1xf32> loc("model.py":12:0)
    %s = dataflow.pointwise sub(%r, %m) : (tensor<16x128xf32>, tensor<16x1xf32>) -> tensor<16x128xf32> loc("model.py":12:0)
    %e = dataflow.pointwise exp(%s) : (tensor<16x128xf32>) -> tensor<16x128xf32> loc("model.py":12:0)
    %se = dataflow.reduce sum %e dims [1] : (tensor<16x128xf32>) -> tensor<16xf32> loc("model.py":12:0)
    %l = dataflow.pointwise log(%se) : (tensor<16xf32>) -> tensor<16xf32> loc("model.py":12:0)
    %l2 = dataflow.reshape %l : (tensor<16xf32>) -> tensor<16x1xf32> loc("model.py":12:0)
    %o = dataflow.pointwise sub(%s, %l2) : (tensor<16x128xf32>, tensor<16x1xf32>) -> tensor<16x128xf32> loc("model.py":12:0)
    dataflow.yield %o, %r, %wt, %b : tensor<16x128xf32>, tensor<16x128xf32>, tensor<64x128xf32>, tensor<128xf32>
  }
}

// CHECK:      builtin.module {
// CHECK-NEXT:   dataflow.section @forward forward attributes {arg_names = ["net.0.weight", "net.0.bias", "input.0"], arg_roles = [#dataflow<role parameter>, #dataflow<role parameter>, #dataflow<role input>], result_names = ["output.0", "saved.relu", "saved.weight_t", "net.0.bias"], result_roles = [#dataflow<role output>, #dataflow<role activation>, #dataflow<role activation>, #dataflow<role parameter>]} {
// CHECK-NEXT:   ^bb0(%w: tensor<128x64xf32>, %b: tensor<128xf32>, %x: tensor<16x64xf32>):
// CHECK-NEXT:     %mm = rdu_tile.kernel @matmul_0 (%x, %w) space [16, 128, 64] tile [16, 128, 64] ins [#rdu_tile.access<0 : [64, 0, 1]>, #rdu_tile.access<0 : [0, 64, 1]>] out #rdu_tile.access<0 : [128, 1, 0]> combiner add : (tensor<16x64xf32>, tensor<128x64xf32>) -> tensor<16x128xf32> {
// CHECK-NEXT:     ^bb0(%0: f32, %1: f32):
// CHECK-NEXT:       %2 = arith.mulf %0, %1 : f32
// CHECK-NEXT:       rdu_tile.yield %2 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %h = rdu_tile.kernel @add_1 (%mm, %b) space [16, 128] tile [16, 128] ins [#rdu_tile.access<0 : [128, 1]>, #rdu_tile.access<0 : [0, 1]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (tensor<16x128xf32>, tensor<128xf32>) -> tensor<16x128xf32> {
// CHECK-NEXT:     ^bb0(%0: f32, %1: f32):
// CHECK-NEXT:       %2 = arith.addf %0, %1 : f32
// CHECK-NEXT:       rdu_tile.yield %2 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %r = rdu_tile.kernel @relu_2 (%h) space [16, 128] tile [16, 128] ins [#rdu_tile.access<0 : [128, 1]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (tensor<16x128xf32>) -> tensor<16x128xf32> {
// CHECK-NEXT:     ^bb0(%0: f32):
// CHECK-NEXT:       %1 = arith.constant 0.000000e+00 : f32
// CHECK-NEXT:       %2 = arith.maximumf %0, %1 : f32
// CHECK-NEXT:       rdu_tile.yield %2 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %m = rdu_tile.kernel @max_3 (%r) space [16, 128] tile [16, 128] ins [#rdu_tile.access<0 : [128, 1]>] out #rdu_tile.access<0 : [1, 0]> combiner max : (tensor<16x128xf32>) -> tensor<16x1xf32> {
// CHECK-NEXT:     ^bb0(%0: f32):
// CHECK-NEXT:       rdu_tile.yield %0 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %s = rdu_tile.kernel @sub_4 (%r, %m) space [16, 128] tile [16, 128] ins [#rdu_tile.access<0 : [128, 1]>, #rdu_tile.access<0 : [1, 0]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (tensor<16x128xf32>, tensor<16x1xf32>) -> tensor<16x128xf32> {
// CHECK-NEXT:     ^bb0(%0: f32, %1: f32):
// CHECK-NEXT:       %2 = arith.subf %0, %1 : f32
// CHECK-NEXT:       rdu_tile.yield %2 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %e = rdu_tile.kernel @exp_5 (%s) space [16, 128] tile [16, 128] ins [#rdu_tile.access<0 : [128, 1]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (tensor<16x128xf32>) -> tensor<16x128xf32> {
// CHECK-NEXT:     ^bb0(%0: f32):
// CHECK-NEXT:       %1 = math.exp %0 : f32
// CHECK-NEXT:       rdu_tile.yield %1 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %se = rdu_tile.kernel @sum_6 (%e) space [16, 128] tile [16, 128] ins [#rdu_tile.access<0 : [128, 1]>] out #rdu_tile.access<0 : [1, 0]> combiner add : (tensor<16x128xf32>) -> tensor<16xf32> {
// CHECK-NEXT:     ^bb0(%0: f32):
// CHECK-NEXT:       rdu_tile.yield %0 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %l = rdu_tile.kernel @log_7 (%se) space [16] tile [16] ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (tensor<16xf32>) -> tensor<16xf32> {
// CHECK-NEXT:     ^bb0(%0: f32):
// CHECK-NEXT:       %1 = math.log %0 : f32
// CHECK-NEXT:       rdu_tile.yield %1 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %o = rdu_tile.kernel @sub_8 (%s, %l) space [16, 128] tile [16, 128] ins [#rdu_tile.access<0 : [128, 1]>, #rdu_tile.access<0 : [1, 0]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (tensor<16x128xf32>, tensor<16xf32>) -> tensor<16x128xf32> {
// CHECK-NEXT:     ^bb0(%0: f32, %1: f32):
// CHECK-NEXT:       %2 = arith.subf %0, %1 : f32
// CHECK-NEXT:       rdu_tile.yield %2 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %0 = rdu_tile.kernel @copy_9 (%w) space [64, 128] tile [64, 128] ins [#rdu_tile.access<0 : [1, 64]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (tensor<128x64xf32>) -> tensor<64x128xf32> {
// CHECK-NEXT:     ^bb0(%1: f32):
// CHECK-NEXT:       rdu_tile.yield %1 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     dataflow.yield %o, %r, %0, %b : tensor<16x128xf32>, tensor<16x128xf32>, tensor<64x128xf32>, tensor<128xf32>
// CHECK-NEXT:   }
// CHECK-NEXT: }

// LOC: rdu_tile.kernel @matmul_0
// LOC: } loc("model.py":10:0)
// LOC: rdu_tile.kernel @relu_2
// LOC: } loc("model.py":11:0)

// On the tiny target (4 lanes, 16 KiB PMUs) the matmul no longer fits one tile.
// TINY: rdu_tile.kernel @matmul_0 (%x, %w) space [16, 128, 64] tile [8, 64, 16]

// -----


// Views and the other compute ops: a non-contiguous reshape gets a copy kernel, a yielded view
// gets a copy kernel, a broadcast 0-d operand reads with stride 0, fill / iota / not / select /
// cast bodies, batched matmul, a full reduction to 0-d.

builtin.module {
  dataflow.section @backward backward attributes {arg_names = ["a", "q", "k"], arg_roles = [#dataflow<role input>, #dataflow<role input>, #dataflow<role input>], result_names = ["o1", "o2", "o3", "o4", "o5", "o6"], result_roles = [#dataflow<role output>, #dataflow<role output>, #dataflow<role output>, #dataflow<role output>, #dataflow<role output>, #dataflow<role output>]} {
  ^bb0(%a: tensor<4x6xf32>, %q: tensor<2x3x5xf32>, %k: tensor<2x5x7xf32>):
    %t = dataflow.transpose %a perm [1, 0] : (tensor<4x6xf32>) -> tensor<6x4xf32>
    %r = dataflow.reshape %t : (tensor<6x4xf32>) -> tensor<24xf32> loc("model.py":30:0)
    %r2 = dataflow.reshape %a : (tensor<4x6xf32>) -> tensor<2x2x6xf32>
    %n = dataflow.pointwise neg(%r) : (tensor<24xf32>) -> tensor<24xf32>
    %bm = dataflow.matmul %q, %k : (tensor<2x3x5xf32>, tensor<2x5x7xf32>) -> tensor<2x3x7xf32>
    %i = dataflow.iota dim 1 : tensor<4x6xi64>
    %f = dataflow.fill 2.5 : tensor<f32>
    %c = dataflow.pointwise cast(%i) : (tensor<4x6xi64>) -> tensor<4x6xf32>
    %g = dataflow.pointwise gt(%c, %f) : (tensor<4x6xf32>, tensor<f32>) -> tensor<4x6xi1>
    %ng = dataflow.pointwise not(%g) : (tensor<4x6xi1>) -> tensor<4x6xi1>
    %s = dataflow.pointwise select(%ng, %a, %f) : (tensor<4x6xi1>, tensor<4x6xf32>, tensor<f32>) -> tensor<4x6xf32>
    %tot = dataflow.reduce sum %s dims [0, 1] : (tensor<4x6xf32>) -> tensor<f32>
    %b = dataflow.broadcast %tot : (tensor<f32>) -> tensor<3x4xf32>
    %ib = dataflow.pointwise cast(%g) : (tensor<4x6xi1>) -> tensor<4x6xi64>
    dataflow.yield %n, %r2, %bm, %b, %ib, %a : tensor<24xf32>, tensor<2x2x6xf32>, tensor<2x3x7xf32>, tensor<3x4xf32>, tensor<4x6xi64>, tensor<4x6xf32>
  }
}

// CHECK:      builtin.module {
// CHECK-NEXT:   dataflow.section @backward backward attributes {arg_names = ["a", "q", "k"], arg_roles = [#dataflow<role input>, #dataflow<role input>, #dataflow<role input>], result_names = ["o1", "o2", "o3", "o4", "o5", "o6"], result_roles = [#dataflow<role output>, #dataflow<role output>, #dataflow<role output>, #dataflow<role output>, #dataflow<role output>, #dataflow<role output>]} {
// CHECK-NEXT:   ^bb0(%a: tensor<4x6xf32>, %q: tensor<2x3x5xf32>, %k: tensor<2x5x7xf32>):
// CHECK-NEXT:     %0 = rdu_tile.kernel @copy_0 (%a) space [6, 4] tile [6, 4] ins [#rdu_tile.access<0 : [1, 6]>] out #rdu_tile.access<0 : [4, 1]> combiner none : (tensor<4x6xf32>) -> tensor<6x4xf32> {
// CHECK-NEXT:     ^bb0(%1: f32):
// CHECK-NEXT:       rdu_tile.yield %1 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %n = rdu_tile.kernel @neg_1 (%0) space [24] tile [24] ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (tensor<6x4xf32>) -> tensor<24xf32> {
// CHECK-NEXT:     ^bb0(%1: f32):
// CHECK-NEXT:       %2 = arith.negf %1 : f32
// CHECK-NEXT:       rdu_tile.yield %2 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %bm = rdu_tile.kernel @matmul_2 (%q, %k) space [2, 3, 7, 5] tile [2, 3, 7, 5] ins [#rdu_tile.access<0 : [15, 5, 0, 1]>, #rdu_tile.access<0 : [35, 0, 1, 7]>] out #rdu_tile.access<0 : [21, 7, 1, 0]> combiner add : (tensor<2x3x5xf32>, tensor<2x5x7xf32>) -> tensor<2x3x7xf32> {
// CHECK-NEXT:     ^bb0(%1: f32, %2: f32):
// CHECK-NEXT:       %3 = arith.mulf %1, %2 : f32
// CHECK-NEXT:       rdu_tile.yield %3 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %i = rdu_tile.kernel @iota_3 () space [4, 6] tile [4, 6] ins [] out #rdu_tile.access<0 : [6, 1]> combiner none : () -> tensor<4x6xi64> {
// CHECK-NEXT:       %1 = rdu_tile.index 1 : i64
// CHECK-NEXT:       rdu_tile.yield %1 : i64
// CHECK-NEXT:     }
// CHECK-NEXT:     %f = rdu_tile.kernel @fill_4 () space [] tile [] ins [] out #rdu_tile.access<0 : []> combiner none : () -> tensor<f32> {
// CHECK-NEXT:       %1 = arith.constant 2.500000e+00 : f32
// CHECK-NEXT:       rdu_tile.yield %1 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %c = rdu_tile.kernel @cast_5 (%i) space [4, 6] tile [4, 6] ins [#rdu_tile.access<0 : [6, 1]>] out #rdu_tile.access<0 : [6, 1]> combiner none : (tensor<4x6xi64>) -> tensor<4x6xf32> {
// CHECK-NEXT:     ^bb0(%1: i64):
// CHECK-NEXT:       %2 = arith.sitofp %1 : i64 to f32
// CHECK-NEXT:       rdu_tile.yield %2 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %g = rdu_tile.kernel @gt_6 (%c, %f) space [4, 6] tile [4, 6] ins [#rdu_tile.access<0 : [6, 1]>, #rdu_tile.access<0 : [0, 0]>] out #rdu_tile.access<0 : [6, 1]> combiner none : (tensor<4x6xf32>, tensor<f32>) -> tensor<4x6xi1> {
// CHECK-NEXT:     ^bb0(%1: f32, %2: f32):
// CHECK-NEXT:       %3 = arith.cmpf ogt, %1, %2 : f32
// CHECK-NEXT:       rdu_tile.yield %3 : i1
// CHECK-NEXT:     }
// CHECK-NEXT:     %ng = rdu_tile.kernel @not_7 (%g) space [4, 6] tile [4, 6] ins [#rdu_tile.access<0 : [6, 1]>] out #rdu_tile.access<0 : [6, 1]> combiner none : (tensor<4x6xi1>) -> tensor<4x6xi1> {
// CHECK-NEXT:     ^bb0(%1: i1):
// CHECK-NEXT:       %2 = arith.constant true
// CHECK-NEXT:       %3 = arith.xori %1, %2 : i1
// CHECK-NEXT:       rdu_tile.yield %3 : i1
// CHECK-NEXT:     }
// CHECK-NEXT:     %s = rdu_tile.kernel @select_8 (%ng, %a, %f) space [4, 6] tile [4, 6] ins [#rdu_tile.access<0 : [6, 1]>, #rdu_tile.access<0 : [6, 1]>, #rdu_tile.access<0 : [0, 0]>] out #rdu_tile.access<0 : [6, 1]> combiner none : (tensor<4x6xi1>, tensor<4x6xf32>, tensor<f32>) -> tensor<4x6xf32> {
// CHECK-NEXT:     ^bb0(%1: i1, %2: f32, %3: f32):
// CHECK-NEXT:       %4 = arith.select %1, %2, %3 : f32
// CHECK-NEXT:       rdu_tile.yield %4 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %tot = rdu_tile.kernel @sum_9 (%s) space [4, 6] tile [4, 6] ins [#rdu_tile.access<0 : [6, 1]>] out #rdu_tile.access<0 : [0, 0]> combiner add : (tensor<4x6xf32>) -> tensor<f32> {
// CHECK-NEXT:     ^bb0(%1: f32):
// CHECK-NEXT:       rdu_tile.yield %1 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %ib = rdu_tile.kernel @cast_10 (%g) space [4, 6] tile [4, 6] ins [#rdu_tile.access<0 : [6, 1]>] out #rdu_tile.access<0 : [6, 1]> combiner none : (tensor<4x6xi1>) -> tensor<4x6xi64> {
// CHECK-NEXT:     ^bb0(%1: i1):
// CHECK-NEXT:       %2 = arith.extui %1 : i1 to i64
// CHECK-NEXT:       rdu_tile.yield %2 : i64
// CHECK-NEXT:     }
// CHECK-NEXT:     %1 = rdu_tile.kernel @copy_11 (%a) space [2, 2, 6] tile [2, 2, 6] ins [#rdu_tile.access<0 : [12, 6, 1]>] out #rdu_tile.access<0 : [12, 6, 1]> combiner none : (tensor<4x6xf32>) -> tensor<2x2x6xf32> {
// CHECK-NEXT:     ^bb0(%2: f32):
// CHECK-NEXT:       rdu_tile.yield %2 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %2 = rdu_tile.kernel @copy_12 (%tot) space [3, 4] tile [3, 4] ins [#rdu_tile.access<0 : [0, 0]>] out #rdu_tile.access<0 : [4, 1]> combiner none : (tensor<f32>) -> tensor<3x4xf32> {
// CHECK-NEXT:     ^bb0(%3: f32):
// CHECK-NEXT:       rdu_tile.yield %3 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     dataflow.yield %n, %1, %bm, %2, %ib, %a : tensor<24xf32>, tensor<2x2x6xf32>, tensor<2x3x7xf32>, tensor<3x4xf32>, tensor<4x6xi64>, tensor<4x6xf32>
// CHECK-NEXT:   }
// CHECK-NEXT: }

// The copy of the non-contiguous reshape keeps the reshape's location.
// LOC: rdu_tile.kernel @copy_0
// LOC: } loc("model.py":30:0)

// -----


// An op the lowering does not know is an error that points at its line.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["x"], arg_roles = [#dataflow<role input>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
  ^bb0(%x: tensor<4xf32>):
    %y = "test.op"(%x) : (tensor<4xf32>) -> tensor<4xf32> loc("model.py":7:0)
    dataflow.yield %y : tensor<4xf32>
  }
}

// CHECK: model.py:7: 'test.op' cannot be lowered to rdu_tile

// -----


// cos and sin (the rotary embedding's): one kernel each, a math.cos / math.sin body.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["x"], arg_roles = [#dataflow<role input>], result_names = ["c", "s"], result_roles = [#dataflow<role output>, #dataflow<role output>]} {
  ^bb0(%x: tensor<8x4xf32>):
    %c = dataflow.pointwise cos(%x) : (tensor<8x4xf32>) -> tensor<8x4xf32>
    %s = dataflow.pointwise sin(%x) : (tensor<8x4xf32>) -> tensor<8x4xf32>
    dataflow.yield %c, %s : tensor<8x4xf32>, tensor<8x4xf32>
  }
}

// CHECK:      builtin.module {
// CHECK-NEXT:   dataflow.section @forward forward attributes {arg_names = ["x"], arg_roles = [#dataflow<role input>], result_names = ["c", "s"], result_roles = [#dataflow<role output>, #dataflow<role output>]} {
// CHECK-NEXT:   ^bb0(%x: tensor<8x4xf32>):
// CHECK-NEXT:     %c = rdu_tile.kernel @cos_0 (%x) space [8, 4] tile [8, 4] ins [#rdu_tile.access<0 : [4, 1]>] out #rdu_tile.access<0 : [4, 1]> combiner none : (tensor<8x4xf32>) -> tensor<8x4xf32> {
// CHECK-NEXT:     ^bb0(%0: f32):
// CHECK-NEXT:       %1 = math.cos %0 : f32
// CHECK-NEXT:       rdu_tile.yield %1 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     %s = rdu_tile.kernel @sin_1 (%x) space [8, 4] tile [8, 4] ins [#rdu_tile.access<0 : [4, 1]>] out #rdu_tile.access<0 : [4, 1]> combiner none : (tensor<8x4xf32>) -> tensor<8x4xf32> {
// CHECK-NEXT:     ^bb0(%0: f32):
// CHECK-NEXT:       %1 = math.sin %0 : f32
// CHECK-NEXT:       rdu_tile.yield %1 : f32
// CHECK-NEXT:     }
// CHECK-NEXT:     dataflow.yield %c, %s : tensor<8x4xf32>, tensor<8x4xf32>
// CHECK-NEXT:   }
// CHECK-NEXT: }
