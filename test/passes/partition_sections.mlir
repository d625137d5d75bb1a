// RUN: rdu-opt %s --split-input-file --verify-diagnostics -p 'partition-sections{target=tiny}' | filecheck %s
// RUN: rdu-opt %s --split-input-file --verify-diagnostics -p 'partition-sections{target=plasticine}' | filecheck %s --check-prefix=PLAS
// RUN: rdu-opt %s --split-input-file --verify-diagnostics -p 'partition-sections{target=plasticine max_ops=1}' | filecheck %s --check-prefix=O0

// Ten relus in a chain need 10 PCUs and 12 PMUs; tiny has 8 and 8. The first piece takes seven
// (7 PCUs; 8 PMUs: the input's and the seven results'), the last relu of it spills to DRAM for
// the second piece, which also stores the argument the section yields as it is. On plasticine
// the section fits and stays as it is. Each section carries the placement that showed it routes
// (rdu.placement: its units' slots and its streams' routes), for place-and-route.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["input.0", "p"], arg_roles = [#dataflow<role input>, #dataflow<role parameter>], result_names = ["output.0", "p"], result_roles = [#dataflow<role output>, #dataflow<role parameter>]} {
  ^bb0(%x: tensor<8xf32>, %p: tensor<8xf32>):
    %b = pmu.buffer %x {name = "input.0", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
    %pb = pmu.buffer %p {name = "p", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
    %u0 = pcu.unit @relu_0 (%b) space [8] tile [8] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<8xf32>) -> tensor<8xf32> {
    ^bb0(%a: f32):
      %z = pcu.const 0.000000e+00 : f32
      %m = pcu.stage max(%a, %z) : (f32, f32) -> f32
      pcu.yield %m : f32
    }
    %r0 = pmu.buffer %u0 {name = "relu_0", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
    %u1 = pcu.unit @relu_1 (%r0) space [8] tile [8] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<8xf32>) -> tensor<8xf32> {
    ^bb0(%a: f32):
      %z = pcu.const 0.000000e+00 : f32
      %m = pcu.stage max(%a, %z) : (f32, f32) -> f32
      pcu.yield %m : f32
    }
    %r1 = pmu.buffer %u1 {name = "relu_1", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
    %u2 = pcu.unit @relu_2 (%r1) space [8] tile [8] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<8xf32>) -> tensor<8xf32> {
    ^bb0(%a: f32):
      %z = pcu.const 0.000000e+00 : f32
      %m = pcu.stage max(%a, %z) : (f32, f32) -> f32
      pcu.yield %m : f32
    }
    %r2 = pmu.buffer %u2 {name = "relu_2", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
    %u3 = pcu.unit @relu_3 (%r2) space [8] tile [8] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<8xf32>) -> tensor<8xf32> {
    ^bb0(%a: f32):
      %z = pcu.const 0.000000e+00 : f32
      %m = pcu.stage max(%a, %z) : (f32, f32) -> f32
      pcu.yield %m : f32
    }
    %r3 = pmu.buffer %u3 {name = "relu_3", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
    %u4 = pcu.unit @relu_4 (%r3) space [8] tile [8] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<8xf32>) -> tensor<8xf32> {
    ^bb0(%a: f32):
      %z = pcu.const 0.000000e+00 : f32
      %m = pcu.stage max(%a, %z) : (f32, f32) -> f32
      pcu.yield %m : f32
    }
    %r4 = pmu.buffer %u4 {name = "relu_4", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
    %u5 = pcu.unit @relu_5 (%r4) space [8] tile [8] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<8xf32>) -> tensor<8xf32> {
    ^bb0(%a: f32):
      %z = pcu.const 0.000000e+00 : f32
      %m = pcu.stage max(%a, %z) : (f32, f32) -> f32
      pcu.yield %m : f32
    }
    %r5 = pmu.buffer %u5 {name = "relu_5", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
    %u6 = pcu.unit @relu_6 (%r5) space [8] tile [8] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<8xf32>) -> tensor<8xf32> {
    ^bb0(%a: f32):
      %z = pcu.const 0.000000e+00 : f32
      %m = pcu.stage max(%a, %z) : (f32, f32) -> f32
      pcu.yield %m : f32
    }
    %r6 = pmu.buffer %u6 {name = "relu_6", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
    %u7 = pcu.unit @relu_7 (%r6) space [8] tile [8] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<8xf32>) -> tensor<8xf32> {
    ^bb0(%a: f32):
      %z = pcu.const 0.000000e+00 : f32
      %m = pcu.stage max(%a, %z) : (f32, f32) -> f32
      pcu.yield %m : f32
    }
    %r7 = pmu.buffer %u7 {name = "relu_7", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
    %u8 = pcu.unit @relu_8 (%r7) space [8] tile [8] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<8xf32>) -> tensor<8xf32> {
    ^bb0(%a: f32):
      %z = pcu.const 0.000000e+00 : f32
      %m = pcu.stage max(%a, %z) : (f32, f32) -> f32
      pcu.yield %m : f32
    }
    %r8 = pmu.buffer %u8 {name = "relu_8", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
    %u9 = pcu.unit @relu_9 (%r8) space [8] tile [8] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<8xf32>) -> tensor<8xf32> {
    ^bb0(%a: f32):
      %z = pcu.const 0.000000e+00 : f32
      %m = pcu.stage max(%a, %z) : (f32, f32) -> f32
      pcu.yield %m : f32
    }
    %r9 = pmu.buffer %u9 {name = "relu_9", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
    dataflow.yield %r9, %pb : memref<8xf32>, memref<8xf32>
  }
}

// CHECK:      dataflow.section @forward.0 forward attributes {rdu.placement = #pcu.section_placement<at [(1, 0), (2, 0), (3, 0), (3, 1), (3, 2), (3, 3), (2, 3), (2, 2), (2, 1), (1, 1), (1, 2), (1, 3), (0, 3), (0, 2), (0, 1)], routes [(0, 0) -> (1, 0), (1, 0) -> (2, 0), (2, 0) -> (3, 0), (3, 0) -> (3, 1), (3, 1) -> (3, 2), (3, 2) -> (3, 3), (3, 3) -> (2, 3), (2, 3) -> (2, 2), (2, 2) -> (2, 1), (2, 1) -> (1, 1), (1, 1) -> (1, 2), (1, 2) -> (1, 3), (1, 3) -> (0, 3), (0, 3) -> (0, 2), (0, 2) -> (0, 1), (0, 1)]>, arg_names = ["input.0"], arg_roles = [#dataflow<role input>], result_names = ["spill.forward.relu_6"], result_roles = [#dataflow<role spill>]} {
// CHECK-NEXT: ^bb0(%0: tensor<8xf32>):
// CHECK-NEXT:   %b = pmu.buffer %0 {name = "input.0",
// CHECK:        %u6 = pcu.unit @relu_6 (%r5)
// CHECK:        %r6 = pmu.buffer %u6 {name = "relu_6",
// CHECK-NEXT:   dataflow.yield %r6 : memref<8xf32>
// CHECK-NEXT: }
// CHECK-NEXT: dataflow.section @forward.1 forward attributes {rdu.placement = #pcu.section_placement<at {{.*}}>, arg_names = ["spill.forward.relu_6", "p"], arg_roles = [#dataflow<role spill>, #dataflow<role parameter>], result_names = ["output.0", "p"], result_roles = [#dataflow<role output>, #dataflow<role parameter>]} {
// CHECK-NEXT: ^bb0(%0: tensor<8xf32>, %1: tensor<8xf32>):
// CHECK-NEXT:   %r6 = pmu.buffer %0 {name = "spill.forward.relu_6", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
// CHECK-NEXT:   %pb = pmu.buffer %1 {name = "p",
// CHECK-NEXT:   %u7 = pcu.unit @relu_7 (%r6)
// CHECK:        %r9 = pmu.buffer %u9 {name = "relu_9",
// CHECK-NEXT:   dataflow.yield %r9, %pb : memref<8xf32>, memref<8xf32>

// PLAS:       dataflow.section @forward forward
// PLAS-NOT:   dataflow.section
// PLAS:       {{// [-]+$}}

// -----

// With max_ops=1 (--o0) every op gets a section. The new p is computed first, but a later op
// still reads the old p: the new one is spilled and copied to p by a last section.

builtin.module {
  dataflow.section @optimizer optimizer attributes {arg_names = ["p"], arg_roles = [#dataflow<role parameter>], result_names = ["p", "output.0"], result_roles = [#dataflow<role parameter>, #dataflow<role output>]} {
  ^bb0(%p: tensor<8xf32>):
    %pb = pmu.buffer %p {name = "p", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
    %u0 = pcu.unit @neg_0 (%pb) space [8] tile [8] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<8xf32>) -> tensor<8xf32> {
    ^bb0(%a: f32):
      %n = pcu.stage neg(%a) : (f32) -> f32
      pcu.yield %n : f32
    }
    %r0 = pmu.buffer %u0 {name = "neg_0", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
    %u1 = pcu.unit @exp_1 (%pb) space [8] tile [8] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<8xf32>) -> tensor<8xf32> {
    ^bb0(%a: f32):
      %e = pcu.stage exp(%a) : (f32) -> f32
      pcu.yield %e : f32
    }
    %r1 = pmu.buffer %u1 {name = "exp_1", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
    dataflow.yield %r0, %r1 : memref<8xf32>, memref<8xf32>
  }
}

// CHECK:      dataflow.section @optimizer optimizer
// CHECK-NOT:  dataflow.section

// O0:         dataflow.section @optimizer.0 optimizer attributes {rdu.placement = #pcu.section_placement<at {{.*}}>, arg_names = ["p"], arg_roles = [#dataflow<role parameter>], result_names = ["spill.optimizer.neg_0"], result_roles = [#dataflow<role spill>]} {
// O0:           %u0 = pcu.unit @neg_0 (%pb)
// O0:         dataflow.section @optimizer.1 optimizer attributes {rdu.placement = #pcu.section_placement<at {{.*}}>, arg_names = ["p"], arg_roles = [#dataflow<role parameter>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
// O0:           %u1 = pcu.unit @exp_1 (%pb)
// O0:         dataflow.section @optimizer.2 optimizer attributes {rdu.placement = #pcu.section_placement<at {{.*}}>, arg_names = ["spill.optimizer.neg_0"], arg_roles = [#dataflow<role spill>], result_names = ["p"], result_roles = [#dataflow<role parameter>]} {
// O0-NEXT:    ^bb0(%0: tensor<8xf32>):
// O0-NEXT:      %1 = pmu.buffer %0 {name = "spill.optimizer.neg_0", tile_bytes = 32 : i64, nbuf = 2 : i64, banks = 4 : i64} : tensor<8xf32> -> memref<8xf32>
// O0-NEXT:      dataflow.yield %1 : memref<8xf32>
// O0-NEXT:    }
