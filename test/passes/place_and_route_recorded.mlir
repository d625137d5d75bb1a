// RUN: rdu-opt %s -p 'place-and-route{target=tiny}' | filecheck %s

// A section that partition-sections placed carries that placement (rdu.placement, a
// #pcu.section_placement: the slot of every unit, then the route of every stream, in the order
// of the section's graph: units in dataflow order; each buffer's fill, each PCU port, each
// store to DRAM).
// place-and-route writes it onto the units as it is, not placing the section again, and drops
// the record.

builtin.module {
  dataflow.section @forward forward attributes {rdu.placement = #pcu.section_placement<at [(1, 0), (2, 0), (3, 0)], routes [(0, 0) -> (1, 0), (1, 0) -> (2, 0), (2, 0) -> (3, 0), (3, 0) -> (2, 0) -> (1, 0) -> (0, 0)]>, arg_names = ["input.0"], arg_roles = [#dataflow<role input>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
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

// CHECK:      dataflow.section @forward forward attributes {arg_names = ["input.0"], arg_roles = [#dataflow<role input>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
// CHECK:      %xb = pmu.buffer %x {{{.*}}, placement = #pmu.placement<at (1, 0), fill (0, 0) -> (1, 0)>}
// CHECK-NEXT: %r = pcu.unit @relu_0 (%xb) {{.*}} combiner none placed #pcu.placement<at (2, 0), routes [(1, 0) -> (2, 0)]> :
// CHECK:      %rb = pmu.buffer %r {{{.*}}, placement = #pmu.placement<at (3, 0), fill (2, 0) -> (3, 0), store (3, 0) -> (2, 0) -> (1, 0) -> (0, 0)>}
// CHECK-NOT:  rdu.placement
