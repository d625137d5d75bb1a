// RUN: rm -f %t
// RUN: rdu-opt %s -p 'emit-pef{output="%t" target=tiny}' --verify-diagnostics --split-input-file | filecheck %s
// RUN: not test -e %t

// emit-pef refuses, in one line naming the section and the unit, a module that is not placed,
// one placed for another target, and sections that disagree about a DRAM symbol; it writes
// nothing then.

builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["input.0"], arg_roles = [#dataflow<role input>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
  ^bb0(%x: tensor<4xf32>):
    %xb = pmu.buffer %x {name = "input.0", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64} : tensor<4xf32> -> memref<4xf32>
    dataflow.yield %xb : memref<4xf32>
  }
}

// CHECK: emit-pef: section 'forward': pmu.buffer "input.0" is not placed (run place-and-route first)

// -----

builtin.module attributes {rdu.target = "tiny"} {
  dataflow.section @forward forward attributes {arg_names = ["input.0"], arg_roles = [#dataflow<role input>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
  ^bb0(%x: tensor<4xf32>):
    %xb = pmu.buffer %x {name = "input.0", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64, placement = #pmu.placement<at (1, 0), fill (0, 0) -> (1, 0), store (1, 0) -> (0, 0)>} : tensor<4xf32> -> memref<4xf32>
    %r = pcu.unit @relu_0 (%xb) space [4] tile [4] lanes 4 ins [#rdu_tile.access<0 : [1]>] out #rdu_tile.access<0 : [1]> combiner none : (memref<4xf32>) -> tensor<4xf32> {
    ^bb0(%a: f32):
      %z = pcu.const 0.0 : f32
      %m = pcu.stage max(%a, %z) : (f32, f32) -> f32
      pcu.yield %m : f32
    }
    %rb = pmu.buffer %r {name = "relu_0", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64, placement = #pmu.placement<at (0, 1), fill (0, 0) -> (0, 1)>} : tensor<4xf32> -> memref<4xf32>
    dataflow.yield %xb : memref<4xf32>
  }
}

// CHECK: emit-pef: section 'forward': pcu.unit @relu_0 is not placed (run place-and-route first)

// -----

builtin.module attributes {rdu.target = "plasticine"} {
  dataflow.section @forward forward attributes {arg_names = ["input.0"], arg_roles = [#dataflow<role input>], result_names = ["output.0"], result_roles = [#dataflow<role output>]} {
  ^bb0(%x: tensor<4xf32>):
    %xb = pmu.buffer %x {name = "input.0", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64, placement = #pmu.placement<at (1, 0), fill (0, 0) -> (1, 0), store (1, 0) -> (0, 0)>} : tensor<4xf32> -> memref<4xf32>
    dataflow.yield %xb : memref<4xf32>
  }
}

// CHECK: emit-pef: the module was placed for target 'plasticine', not 'tiny'

// -----

builtin.module attributes {rdu.target = "tiny"} {
  dataflow.section @forward forward attributes {arg_names = ["input.0"], arg_roles = [#dataflow<role input>], result_names = ["saved.x"], result_roles = [#dataflow<role activation>]} {
  ^bb0(%x: tensor<4xf32>):
    %xb = pmu.buffer %x {name = "input.0", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64, placement = #pmu.placement<at (1, 0), fill (0, 0) -> (1, 0), store (1, 0) -> (0, 0)>} : tensor<4xf32> -> memref<4xf32>
    dataflow.yield %xb : memref<4xf32>
  }
  dataflow.section @backward backward attributes {arg_names = ["saved.x"], arg_roles = [#dataflow<role activation>], result_names = [], result_roles = []} {
  ^bb0(%x: tensor<2x2xf32>):
    %xb = pmu.buffer %x {name = "saved.x", tile_bytes = 16 : i64, nbuf = 1 : i64, banks = 1 : i64, placement = #pmu.placement<at (1, 0), fill (0, 0) -> (1, 0)>} : tensor<2x2xf32> -> memref<2x2xf32>
    dataflow.yield
  }
}

// CHECK: emit-pef: symbol 'saved.x' is [4] f32 (activation) as section 'forward' result but [2, 2] f32 (activation) as section 'backward' argument
