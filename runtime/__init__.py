"""The RDU runtime: runs a PEF on an emulated fabric, with numpy alone.

- ``runtime.pef``: the PEF format (schema, container, validation), shared with the compiler;
- ``runtime.fabric``: the emulator (``Fabric``, the PCU instruction set ``OPCODES``);
- ``runtime.session``: ``TrainingSession`` / ``InferenceSession`` over a PEF and its state;
- ``runtime.checkpoint``: ``.pt`` checkpoints in torch's formats (torch imported lazily there);
- ``runtime.perf``: the performance model (cycles, FLOPs, off-chip bytes of a section) and the
  counters a run keeps with it (``rdu-run --profile``).

The runtime imports no xdsl, dialects or compiler: a user can run a PEF with the runtime alone.
Every error it raises on bad input is a ``runtime.errors.RduError`` with a one-line message.
"""
