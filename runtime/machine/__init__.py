"""The fabric's shared rules: what the compiler, the dialects and the runtime all read.

- ``opcodes``: the PCU's instruction set, one table (name, arity, type rule, FLOPs, stages);
- ``rules``: the arithmetic of the fabric's configuration (reduced counters, an access's address
  range, a parallel copy's block, a unit body's pipeline depth);
- ``targets``: the target presets and the figures derived from a target (units, links, peak);
- ``perf``: the performance model (cycles, FLOPs, off-chip bytes of a section);
- ``atomic``: atomic file writes (a PEF, a checkpoint, a report is whole or absent).

These modules import the PEF format (``runtime.pef``) and the standard library only: never
xdsl, the dialects, the compiler, the emulator or the sessions (``test/runtime/test_layers.py``).
"""
