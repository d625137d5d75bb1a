// RUN: rdu-opt %s --verify-diagnostics --split-input-file | filecheck %s

// One case per verifier message of the window and padding ops.

builtin.module {
  dataflow.section @s forward attributes {arg_names = ["x"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%x: tensor<4x6xf32>):
    %0 = dataflow.as_strided %x offset 0 strides [6] : (tensor<4x6xf32>) -> tensor<4x6xf32>
    dataflow.yield
  }
}

// CHECK: as_strided has 1 strides for a rank-2 result

// -----

builtin.module {
  dataflow.section @s forward attributes {arg_names = ["x"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%x: tensor<4x6xf32>):
    %0 = dataflow.as_strided %x offset 2 strides [6, 1] : (tensor<4x6xf32>) -> tensor<4x6xf32>
    dataflow.yield
  }
}

// CHECK: as_strided reaches elements [2, 25] of an input of 24 elements

// -----

builtin.module {
  dataflow.section @s forward attributes {arg_names = ["x"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%x: tensor<4x6xf32>):
    %0 = dataflow.as_strided %x offset 0 strides [-1, 1] : (tensor<4x6xf32>) -> tensor<4x6xf32>
    dataflow.yield
  }
}

// CHECK: as_strided reaches elements [-3, 5] of an input of 24 elements

// -----

builtin.module {
  dataflow.section @s forward attributes {arg_names = ["x"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%x: tensor<4x6xf32>):
    %0 = dataflow.as_strided %x offset 0 strides [6, 1] : (tensor<4x6xf32>) -> tensor<4x6xi64>
    dataflow.yield
  }
}

// CHECK: as_strided must keep the element type

// -----

builtin.module {
  dataflow.section @s forward attributes {arg_names = ["x"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%x: tensor<4x6xf32>):
    %0 = dataflow.pad %x low [1] high [1, 1] interior [0, 0] : (tensor<4x6xf32>) -> tensor<6x8xf32>
    dataflow.yield
  }
}

// CHECK: pad needs one low, high and interior per dim of a rank-2 input

// -----

builtin.module {
  dataflow.section @s forward attributes {arg_names = ["x"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%x: tensor<4x6xf32>):
    %0 = dataflow.pad %x low [-1, 0] high [1, 1] interior [0, 0] : (tensor<4x6xf32>) -> tensor<4x7xf32>
    dataflow.yield
  }
}

// CHECK: pad amounts must be non-negative

// -----

builtin.module {
  dataflow.section @s forward attributes {arg_names = ["x"], arg_roles = [#dataflow<role input>], result_names = [], result_roles = []} {
  ^bb0(%x: tensor<4x6xf32>):
    %0 = dataflow.pad %x low [1, 0] high [0, 0] interior [1, 0] : (tensor<4x6xf32>) -> tensor<9x6xf32>
    dataflow.yield
  }
}

// CHECK: pad result shape [9, 6] should be [8, 6]
