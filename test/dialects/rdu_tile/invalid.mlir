// RUN: rdu-opt %s --parsing-diagnostics --verify-diagnostics --split-input-file | filecheck %s
// One access per operand.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<16x64xf32>):
    %c = rdu_tile.kernel (%a) space [16, 64] tile [16, 64] ins [] out #rdu_tile.access<0 : [64, 1]> combiner none : (tensor<16x64xf32>) -> tensor<16x64xf32> {
    ^bb0(%x: f32):
      rdu_tile.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: rdu_tile.kernel: 1 operands but 0 ins accesses

// -----

// One stride per counter.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<16x64xf32>):
    %c = rdu_tile.kernel (%a) space [16, 64] tile [16, 64] ins [#rdu_tile.access<0 : [64]>] out #rdu_tile.access<0 : [64, 1]> combiner none : (tensor<16x64xf32>) -> tensor<16x64xf32> {
    ^bb0(%x: f32):
      rdu_tile.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: rdu_tile.kernel: ins[0] access has 1 strides but the space has 2 counters

// -----

// Accesses stay inside the buffer.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<16x64xf32>):
    %c = rdu_tile.kernel (%a) space [16, 64] tile [16, 64] ins [#rdu_tile.access<0 : [65, 1]>] out #rdu_tile.access<0 : [64, 1]> combiner none : (tensor<16x64xf32>) -> tensor<16x64xf32> {
    ^bb0(%x: f32):
      rdu_tile.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: rdu_tile.kernel: ins[0] access #rdu_tile.access<0 : [65, 1]> reaches addresses [0, 1038] over space [16, 64], outside its buffer of 1024 elements (shape [16, 64])

// -----

// Negative addresses are out of bounds too.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<16x64xf32>):
    %c = rdu_tile.kernel (%a) space [16, 64] tile [16, 64] ins [#rdu_tile.access<0 : [64, 1]>] out #rdu_tile.access<-1 : [1, 0]> combiner add : (tensor<16x64xf32>) -> tensor<16xf32> {
    ^bb0(%x: f32):
      rdu_tile.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: rdu_tile.kernel: out access #rdu_tile.access<-1 : [1, 0]> reaches addresses [-1, 14]

// -----

// A reduction counter needs a combiner.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<16x64xf32>):
    %c = rdu_tile.kernel (%a) space [16, 64] tile [16, 64] ins [#rdu_tile.access<0 : [64, 1]>] out #rdu_tile.access<0 : [1, 0]> combiner none : (tensor<16x64xf32>) -> tensor<16xf32> {
    ^bb0(%x: f32):
      rdu_tile.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: rdu_tile.kernel: counters [1] have out stride 0 (a reduction) but the combiner is 'none'

// -----

// A combiner needs a reduction counter.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<16x64xf32>):
    %c = rdu_tile.kernel (%a) space [16, 64] tile [16, 64] ins [#rdu_tile.access<0 : [64, 1]>] out #rdu_tile.access<0 : [64, 1]> combiner add : (tensor<16x64xf32>) -> tensor<16x64xf32> {
    ^bb0(%x: f32):
      rdu_tile.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: rdu_tile.kernel: combiner 'add' but no counter is reduced (none has out stride 0 and extent other than 1) and the output is not a scatter

// -----

// Known combiners only.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<16x64xf32>):
    %c = rdu_tile.kernel (%a) space [16, 64] tile [16, 64] ins [#rdu_tile.access<0 : [64, 1]>] out #rdu_tile.access<0 : [1, 0]> combiner mul : (tensor<16x64xf32>) -> tensor<16xf32> {
    ^bb0(%x: f32):
      rdu_tile.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: unknown combiner 'mul' (expected one of none, add, max, min)

// -----

// A tile is no larger than its counter.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<16x64xf32>):
    %c = rdu_tile.kernel (%a) space [16, 64] tile [16, 128] ins [#rdu_tile.access<0 : [64, 1]>] out #rdu_tile.access<0 : [64, 1]> combiner none : (tensor<16x64xf32>) -> tensor<16x64xf32> {
    ^bb0(%x: f32):
      rdu_tile.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: rdu_tile.kernel: tile extent 128 of counter 1 must be in [1, 64]

// -----

// One tile extent per counter.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<16x64xf32>):
    %c = rdu_tile.kernel (%a) space [16, 64] tile [16] ins [#rdu_tile.access<0 : [64, 1]>] out #rdu_tile.access<0 : [64, 1]> combiner none : (tensor<16x64xf32>) -> tensor<16x64xf32> {
    ^bb0(%x: f32):
      rdu_tile.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: rdu_tile.kernel: tile [16] needs one extent per counter of space [16, 64]

// -----

// Body arguments are the operands' scalars.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<16x64xf32>):
    %c = rdu_tile.kernel (%a) space [16, 64] tile [16, 64] ins [#rdu_tile.access<0 : [64, 1]>] out #rdu_tile.access<0 : [64, 1]> combiner none : (tensor<16x64xf32>) -> tensor<16x64xf32> {
    ^bb0(%x: f64):
      rdu_tile.yield %x : f64
    }
    dataflow.yield
  }
}

// CHECK: rdu_tile.kernel: body arguments (f64) must be the operands' element types (f32)

// -----

// The body yields the result's element type.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<16x64xf32>):
    %c = rdu_tile.kernel (%a) space [16, 64] tile [16, 64] ins [#rdu_tile.access<0 : [64, 1]>] out #rdu_tile.access<0 : [64, 1]> combiner none : (tensor<16x64xf32>) -> tensor<16x64xi1> {
    ^bb0(%x: f32):
      rdu_tile.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: rdu_tile.kernel: body must yield one value of the result's element type i1, got (f32)

// -----

// Only scalar arith/math ops in a body.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<16x64xf32>):
    %c = rdu_tile.kernel (%a) space [16, 64] tile [16, 64] ins [#rdu_tile.access<0 : [64, 1]>] out #rdu_tile.access<0 : [64, 1]> combiner none : (tensor<16x64xf32>) -> tensor<16x64xf32> {
    ^bb0(%x: f32):
      %t = tensor.empty() : tensor<2xf32>
      rdu_tile.yield %x : f32
    }
    dataflow.yield
  }
}

// CHECK: rdu_tile.kernel: 'tensor.empty' is not allowed in the body (only arith, math, rdu_tile ops)

// -----

// Counters exist.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%a: tensor<16x64xf32>):
    %c = rdu_tile.kernel (%a) space [16, 64] tile [16, 64] ins [#rdu_tile.access<0 : [64, 1]>] out #rdu_tile.access<0 : [64, 1]> combiner none : (tensor<16x64xf32>) -> tensor<16x64xi64> {
    ^bb0(%x: f32):
      %i = rdu_tile.index 2 : i64
      rdu_tile.yield %i : i64
    }
    dataflow.yield
  }
}

// CHECK: rdu_tile.index: counter 2 out of range, the kernel's space has 2 counters
