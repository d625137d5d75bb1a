// RUN: rdu-opt %s -p convert-dataflow-to-rdu-tile --verify-diagnostics --split-input-file | filecheck %s

// The type rules (runtime/machine/opcodes.py) allow what the fabric computes; a kind the
// lowering cannot express yet is refused in one line, never lowered to something else.

// Bitwise not of an i64: the PCU's `not` computes it, the lowering has only the i1 form.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a"], arg_roles = [#dataflow<role input>], result_names = ["out"], result_roles = [#dataflow<role output>]} {
  ^bb0(%a: tensor<4xi64>):
    %0 = dataflow.pointwise not(%a) : (tensor<4xi64>) -> tensor<4xi64>
    dataflow.yield %0 : tensor<4xi64>
  }
}

// CHECK: pointwise 'not' on i64 has no lowering to the fabric yet

// -----

// A float to integer powers: math.powf takes two floats.
builtin.module {
  dataflow.section @forward forward attributes {arg_names = ["a", "e"], arg_roles = [#dataflow<role input>, #dataflow<role input>], result_names = ["out"], result_roles = [#dataflow<role output>]} {
  ^bb0(%a: tensor<4xf32>, %e: tensor<4xi64>):
    %0 = dataflow.pointwise pow(%a, %e) : (tensor<4xf32>, tensor<4xi64>) -> tensor<4xf32>
    dataflow.yield %0 : tensor<4xf32>
  }
}

// CHECK: pointwise 'pow' of f32 to i64 powers has no lowering to the fabric yet
