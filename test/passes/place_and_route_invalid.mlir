// RUN: rdu-opt %s -p 'place-and-route{target=tiny}' --verify-diagnostics --split-input-file | filecheck %s
// RUN: rdu-opt %s -p 'place-and-route{target=nope}' --verify-diagnostics --split-input-file | filecheck %s --check-prefix=TARGET

// A section that needs more units of a kind than the target has fails with one line naming the
// section and the target (splitting it into smaller sections is a later pass's job).

builtin.module {
  dataflow.section @backward backward attributes {arg_names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"], arg_roles = [#dataflow<role input>, #dataflow<role input>, #dataflow<role input>, #dataflow<role input>, #dataflow<role input>, #dataflow<role input>, #dataflow<role input>, #dataflow<role input>, #dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<4xf32>, %b: tensor<4xf32>, %c: tensor<4xf32>, %d: tensor<4xf32>, %e: tensor<4xf32>, %f: tensor<4xf32>, %g: tensor<4xf32>, %h: tensor<4xf32>, %i: tensor<4xf32>):
    %0 = pmu.buffer %a {name = "a", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %1 = pmu.buffer %b {name = "b", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %2 = pmu.buffer %c {name = "c", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %3 = pmu.buffer %d {name = "d", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %4 = pmu.buffer %e {name = "e", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %5 = pmu.buffer %f {name = "f", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %6 = pmu.buffer %g {name = "g", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %7 = pmu.buffer %h {name = "h", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %8 = pmu.buffer %i {name = "i", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    dataflow.yield
  }
}

// CHECK: section 'backward' needs 9 PMUs, target 'tiny' has 8

// -----

// Five PCUs each read one PMU on two ports: ten streams leave its switch, whose four outgoing
// links carry two streams each on tiny.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = ["out.0", "out.1", "out.2", "out.3", "out.4"], result_roles = [#dataflow<role output>, #dataflow<role output>, #dataflow<role output>, #dataflow<role output>, #dataflow<role output>]} {
  ^bb0(%a: tensor<4xf32>):
    %0 = pmu.buffer %a {name = "a", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %s0 = pcu.unit @square_0 (%0, %0) space [4] tile [4] lanes 4 ins [#rdu_tile.access<0 : [1]>, #rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<4xf32>, memref<4xf32>) -> tensor<4xf32> {
    ^bb0(%x: f32, %y: f32):
      %p = pcu.stage mul(%x, %y) : (f32, f32) -> f32
      pcu.yield %p : f32
    }
    %b0 = pmu.buffer %s0 {name = "square_0", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %s1 = pcu.unit @square_1 (%0, %0) space [4] tile [4] lanes 4 ins [#rdu_tile.access<0 : [1]>, #rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<4xf32>, memref<4xf32>) -> tensor<4xf32> {
    ^bb0(%x: f32, %y: f32):
      %p = pcu.stage mul(%x, %y) : (f32, f32) -> f32
      pcu.yield %p : f32
    }
    %b1 = pmu.buffer %s1 {name = "square_1", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %s2 = pcu.unit @square_2 (%0, %0) space [4] tile [4] lanes 4 ins [#rdu_tile.access<0 : [1]>, #rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<4xf32>, memref<4xf32>) -> tensor<4xf32> {
    ^bb0(%x: f32, %y: f32):
      %p = pcu.stage mul(%x, %y) : (f32, f32) -> f32
      pcu.yield %p : f32
    }
    %b2 = pmu.buffer %s2 {name = "square_2", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %s3 = pcu.unit @square_3 (%0, %0) space [4] tile [4] lanes 4 ins [#rdu_tile.access<0 : [1]>, #rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<4xf32>, memref<4xf32>) -> tensor<4xf32> {
    ^bb0(%x: f32, %y: f32):
      %p = pcu.stage mul(%x, %y) : (f32, f32) -> f32
      pcu.yield %p : f32
    }
    %b3 = pmu.buffer %s3 {name = "square_3", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %s4 = pcu.unit @square_4 (%0, %0) space [4] tile [4] lanes 4 ins [#rdu_tile.access<0 : [1]>, #rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<4xf32>, memref<4xf32>) -> tensor<4xf32> {
    ^bb0(%x: f32, %y: f32):
      %p = pcu.stage mul(%x, %y) : (f32, f32) -> f32
      pcu.yield %p : f32
    }
    %b4 = pmu.buffer %s4 {name = "square_4", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    dataflow.yield %b0, %b1, %b2, %b3, %b4 : memref<4xf32>, memref<4xf32>, memref<4xf32>, memref<4xf32>, memref<4xf32>
  }
}

// CHECK: section 'forward' cannot be routed on target 'tiny': no path with room left for the stream pmu.buffer "a" -> pcu.unit @square_{{[0-9]}} (link capacity 2)

// TARGET: unknown target 'nope' (choose from plasticine, sn10, sn30, sn40l, tiny, or give a target file NAME.toml)

// -----

// A recorded placement (rdu.placement, see partition-sections) that does not fit the section's
// units is refused: here the PCU sits on a PMU slot (x + y odd).

builtin.module {
  dataflow.section @forward forward attributes {rdu.placement = #pcu.section_placement<at [(1, 0), (0, 1), (3, 0)], routes [(0, 0) -> (1, 0), (1, 0) -> (0, 0) -> (0, 1), (0, 1) -> (1, 1) -> (2, 1) -> (3, 1) -> (3, 0), (3, 0) -> (2, 0) -> (1, 0) -> (0, 0)]>, arg_names = ["input.0"], arg_roles = [#dataflow<role input>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
  ^bb0(%x: tensor<4xf32>):
    %xb = pmu.buffer %x {name = "input.0", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    %r = pcu.unit @relu_0 (%xb) space [4] tile [4] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<4xf32>) -> tensor<4xf32> {
    ^bb0(%a: f32):
      %z = pcu.const 0.000000e+00 : f32
      %m = pcu.stage max(%a, %z) : (f32, f32) -> f32
      pcu.yield %m : f32
    }
    %rb = pmu.buffer %r {name = "relu_0", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    dataflow.yield %rb : memref<4xf32>
  }
}

// CHECK: section 'forward': the placement recorded on it (rdu.placement) does not fit its units on target 'tiny': pcu.unit @relu_0 at [0, 1], not a PCU slot
