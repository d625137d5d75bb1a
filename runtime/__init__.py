"""The RDU runtime: runs a PEF on an emulated fabric, with numpy alone.

- ``runtime.pef``: the PEF format (schema, container, validation), shared with the compiler;
- ``runtime.machine``: the fabric's rules (opcodes and their type rules, counters, access
  ranges, target presets and figures, the performance model, atomic writes), shared with the
  compiler and the dialects;
- ``runtime.fabric``: the emulator (``Fabric``, the numpy implementation of every opcode);
- ``runtime.session``: ``TrainingSession`` / ``InferenceSession`` over a PEF and its state;
- ``runtime.checkpoint``: ``.pt`` checkpoints in torch's formats (torch imported lazily there);

The runtime imports no xdsl, dialects or compiler: a user can run a PEF with the runtime alone.
Every error it raises on bad input is a ``runtime.errors.RduError`` with a one-line message.
"""
