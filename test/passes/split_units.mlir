// RUN: rdu-opt %s --split-input-file --verify-diagnostics -p 'split-units{target=tiny}' | filecheck %s

// On tiny a PCU has 4 stages and 3 ports. Five stages in a chain: the first four become the
// part @exp_0.0, written to its own PMU, which the unit reads in their place.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["x"], arg_roles = [#dataflow<role input>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
  ^bb0(%x: tensor<8xf32>):
    %0 = pmu.buffer %x {name = "x", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
    %r = pcu.unit @exp_0 (%0) space [8] tile [8] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<8xf32>) -> tensor<8xf32> {
    ^bb0(%a: f32):
      %1 = pcu.stage tanh(%a) : (f32) -> f32
      %2 = pcu.stage sqrt(%1) : (f32) -> f32
      %3 = pcu.stage abs(%2) : (f32) -> f32
      %4 = pcu.stage neg(%3) : (f32) -> f32
      %5 = pcu.stage exp(%4) : (f32) -> f32
      pcu.yield %5 : f32
    }
    %rb = pmu.buffer %r {name = "exp_0", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
    dataflow.yield %rb : memref<8xf32>
  }
}

// CHECK:      %0 = pmu.buffer %x {name = "x"
// CHECK-NEXT: %1 = pcu.unit @exp_0.0 (%0) space [8] tile [8] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<8xf32>) -> tensor<8xf32> {
// CHECK-NEXT: ^bb0(%2: f32):
// CHECK-NEXT:   %3 = pcu.stage tanh(%2) : (f32) -> f32
// CHECK-NEXT:   %4 = pcu.stage sqrt(%3) : (f32) -> f32
// CHECK-NEXT:   %5 = pcu.stage abs(%4) : (f32) -> f32
// CHECK-NEXT:   %6 = pcu.stage neg(%5) : (f32) -> f32
// CHECK-NEXT:   pcu.yield %6 : f32
// CHECK-NEXT: }
// CHECK-NEXT: %exp_0_0_pmu = pmu.buffer %1 {name = "exp_0.0", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
// CHECK-NEXT: %r = pcu.unit @exp_0 (%exp_0_0_pmu) space [8] tile [8] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<8xf32>) -> tensor<8xf32> {
// CHECK-NEXT: ^bb0(%2: f32):
// CHECK-NEXT:   %3 = pcu.stage exp(%2) : (f32) -> f32
// CHECK-NEXT:   pcu.yield %3 : f32
// CHECK-NEXT: }
// CHECK-NEXT: %rb = pmu.buffer %r {name = "exp_0"

// -----

// A matmul whose left operand is scaled and shifted first (5 stages): the scale-and-shift
// becomes a part over the counters it varies over (m, k), a 64x128 tensor the matmul reads once
// for every n (read out of the order it is written, assign-pmus keeps it whole on chip).

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a", "b"], arg_roles = [#dataflow<role input>, #dataflow<role input>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
  ^bb0(%a: tensor<64x128xf32>, %b: tensor<128x4xf32>):
    %0 = pmu.buffer %a {name = "a", tile_bytes = 2048 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<64x128xf32> -> memref<64x128xf32>
    %1 = pmu.buffer %b {name = "b", tile_bytes = 2048 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<128x4xf32> -> memref<128x4xf32>
    %r = pcu.unit @matmul_0 (%0, %1) space [64, 4, 128] tile [4, 4, 128] lanes 4 ins [#rdu_tile.access<0 : [128, 0, 1]>, #rdu_tile.access<0 : [0, 1, 4]>] out #rdu_tile.access<0 : [4, 1, 0]> combiner add : (memref<64x128xf32>, memref<128x4xf32>) -> tensor<64x4xf32> {
    ^bb0(%x: f32, %y: f32):
      %c2 = pcu.const 2.000000e+00 : f32
      %2 = pcu.stage mul(%x, %c2) : (f32, f32) -> f32
      %c1 = pcu.const 1.000000e+00 : f32
      %3 = pcu.stage add(%2, %c1) : (f32, f32) -> f32
      %4 = pcu.stage mul(%3, %y) : (f32, f32) -> f32
      pcu.yield %4 : f32
    }
    %rb = pmu.buffer %r {name = "matmul_0", tile_bytes = 64 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<64x4xf32> -> memref<64x4xf32>
    dataflow.yield %rb : memref<64x4xf32>
  }
}

// CHECK:      %2 = pcu.unit @matmul_0.0 (%0) space [64, 128] tile [4, 128] lanes 4 ins [#rdu_tile.access<0 : [128, 1]>] out #rdu_tile.access<0 : [128, 1]> combiner none : (memref<64x128xf32>) -> tensor<64x128xf32> {
// CHECK-NEXT: ^bb0(%3: f32):
// CHECK-NEXT:   %c2 = pcu.const 2.000000e+00 : f32
// CHECK-NEXT:   %c1 = pcu.const 1.000000e+00 : f32
// CHECK-NEXT:   %4 = pcu.stage mul(%3, %c2) : (f32, f32) -> f32
// CHECK-NEXT:   %5 = pcu.stage add(%4, %c1) : (f32, f32) -> f32
// CHECK-NEXT:   pcu.yield %5 : f32
// CHECK-NEXT: }
// CHECK-NEXT: %matmul_0_0_pmu = pmu.buffer %2 {name = "matmul_0.0", tile_bytes = 2048 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<64x128xf32> -> memref<64x128xf32>
// CHECK-NEXT: %r = pcu.unit @matmul_0 (%1, %matmul_0_0_pmu) space [64, 4, 128] tile [4, 4, 128] lanes 4 ins [#rdu_tile.access<0 : [0, 1, 4]>, #rdu_tile.access<0 : [128, 0, 1]>] out #rdu_tile.access<0 : [4, 1, 0]> combiner add : (memref<128x4xf32>, memref<64x128xf32>) -> tensor<64x4xf32> {
// CHECK-NEXT: ^bb0(%3: f32, %4: f32):
// CHECK-NEXT:   %5 = pcu.stage mul(%4, %3) : (f32, f32) -> f32
// CHECK-NEXT:   pcu.yield %5 : f32
// CHECK-NEXT: }

// -----

// Two gathered operands (each read through its index port) need 4 ports: one gather becomes
// a copy of its own, the sum reads its result as one port.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["wte", "wpe", "idx", "pos"], arg_roles = [#dataflow<role parameter>, #dataflow<role parameter>, #dataflow<role input>, #dataflow<role input>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
  ^bb0(%wte: tensor<10x4xf32>, %wpe: tensor<6x4xf32>, %idx: tensor<6xi64>, %pos: tensor<6xi64>):
    %0 = pmu.buffer %wte {name = "wte", tile_bytes = 160 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<10x4xf32> -> memref<10x4xf32>
    %1 = pmu.buffer %idx {name = "idx", tile_bytes = 48 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<6xi64> -> memref<6xi64>
    %2 = pmu.buffer %wpe {name = "wpe", tile_bytes = 96 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<6x4xf32> -> memref<6x4xf32>
    %3 = pmu.buffer %pos {name = "pos", tile_bytes = 48 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<6xi64> -> memref<6xi64>
    %r = pcu.unit @add_0 (%0, %1, %2, %3) space [6, 4] tile [6, 4] lanes 4 ins [#rdu_tile.access<0 : [0, 1] + 4 * ins[1] of 10>, #rdu_tile.access<0 : [1, 0]>, #rdu_tile.access<0 : [0, 1] + 4 * ins[3] of 6>, #rdu_tile.access<0 : [1, 0]>] out #rdu_tile.access<0 : [4, 1]> combiner none : (memref<10x4xf32>, memref<6xi64>, memref<6x4xf32>, memref<6xi64>) -> tensor<6x4xf32> {
    ^bb0(%x: f32, %i: i64, %y: f32, %j: i64):
      %4 = pcu.stage add(%x, %y) : (f32, f32) -> f32
      pcu.yield %4 : f32
    }
    %rb = pmu.buffer %r {name = "add_0", tile_bytes = 96 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<6x4xf32> -> memref<6x4xf32>
    dataflow.yield %rb : memref<6x4xf32>
  }
}

// CHECK:      %4 = pcu.unit @add_0.0 (%0, %1) space [6, 4] tile [6, 4] lanes 4 ins [#rdu_tile.access<0 : [0, 1] + 4 * ins[1] of 10>, #rdu_tile.access<0 : [1, 0]>] out #rdu_tile.access<0 : [4, 1]> combiner none : (memref<10x4xf32>, memref<6xi64>) -> tensor<6x4xf32> {
// CHECK-NEXT: ^bb0(%5: f32, %6: i64):
// CHECK-NEXT:   pcu.yield %5 : f32
// CHECK-NEXT: }
// CHECK-NEXT: %add_0_0_pmu = pmu.buffer %4 {name = "add_0.0"
// CHECK-NEXT: %r = pcu.unit @add_0 (%2, %3, %add_0_0_pmu) space [6, 4] tile [6, 4] lanes 4 ins [#rdu_tile.access<0 : [0, 1] + 4 * ins[1] of 6>, #rdu_tile.access<0 : [1, 0]>, #rdu_tile.access<0 : [4, 1]>] out #rdu_tile.access<0 : [4, 1]> combiner none : (memref<6x4xf32>, memref<6xi64>, memref<6x4xf32>) -> tensor<6x4xf32> {
// CHECK-NEXT: ^bb0(%5: f32, %6: i64, %7: f32):
// CHECK-NEXT:   %8 = pcu.stage add(%7, %5) : (f32, f32) -> f32
// CHECK-NEXT:   pcu.yield %8 : f32
// CHECK-NEXT: }

// -----

// A widened bf16 port read by stages on both sides of the cut (x * tanh(sqrt(|-x|)) + x, on
// tiny's 4 stages): each part widens the port again, a stage, instead of a part of its own writing the
// widened copy.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["x"], arg_roles = [#dataflow<role input>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
  ^bb0(%x: tensor<8xbf16>):
    %0 = pmu.buffer %x {name = "x", tile_bytes = 16 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xbf16> -> memref<8xbf16>
    %r = pcu.unit @gelu_0 (%0) space [8] tile [8] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<8xbf16>) -> tensor<8xf32> {
    ^bb0(%a: bf16):
      %c = pcu.stage cast(%a) : (bf16) -> f32
      %1 = pcu.stage neg(%c) : (f32) -> f32
      %2 = pcu.stage abs(%1) : (f32) -> f32
      %3 = pcu.stage sqrt(%2) : (f32) -> f32
      %4 = pcu.stage tanh(%3) : (f32) -> f32
      %5 = pcu.stage mul(%c, %4) : (f32, f32) -> f32
      %6 = pcu.stage add(%5, %c) : (f32, f32) -> f32
      pcu.yield %6 : f32
    }
    %rb = pmu.buffer %r {name = "gelu_0", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
    dataflow.yield %rb : memref<8xf32>
  }
}

// CHECK:      %0 = pmu.buffer %x {name = "x"
// CHECK-NEXT: %1 = pcu.unit @gelu_0.0 (%0) space [8] tile [8] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<8xbf16>) -> tensor<8xf32> {
// CHECK-NEXT: ^bb0(%2: bf16):
// CHECK-NEXT:   %c = pcu.stage cast(%2) : (bf16) -> f32
// CHECK-NEXT:   %3 = pcu.stage neg(%c) : (f32) -> f32
// CHECK-NEXT:   %4 = pcu.stage abs(%3) : (f32) -> f32
// CHECK-NEXT:   %5 = pcu.stage sqrt(%4) : (f32) -> f32
// CHECK-NEXT:   pcu.yield %5 : f32
// CHECK-NEXT: }
// CHECK-NEXT: %gelu_0_0_pmu = pmu.buffer %1 {name = "gelu_0.0"
// CHECK-NEXT: %r = pcu.unit @gelu_0 (%0, %gelu_0_0_pmu) space [8] tile [8] lanes 4 ins [#rdu_tile.access<0 : [1]>, #rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<8xbf16>, memref<8xf32>) -> tensor<8xf32> {
// CHECK-NEXT: ^bb0(%2: bf16, %3: f32):
// CHECK-NEXT:   %c = pcu.stage cast(%2) : (bf16) -> f32
// CHECK-NEXT:   %4 = pcu.stage tanh(%3) : (f32) -> f32
// CHECK-NEXT:   %5 = pcu.stage mul(%c, %4) : (f32, f32) -> f32
// CHECK-NEXT:   %6 = pcu.stage add(%5, %c) : (f32, f32) -> f32
// CHECK-NEXT:   pcu.yield %6 : f32
// CHECK-NEXT: }
