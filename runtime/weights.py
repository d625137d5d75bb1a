"""An inference PEF's embedded weights (``schema.Weights``) to and from numpy arrays.

``rdu-compile --inference --weights CKPT`` stores every parameter and persistent buffer in the
PEF at its symbol's dtype (``weights_section``: a ``--precision bf16`` PEF rounds fp32 values to
bf16 to nearest even, as torch's ``.to(torch.bfloat16)``, two bytes an element); ``rdu-run
--inference`` reads them back (``embedded_state``). The bytes are little endian, row major.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection, Mapping

import numpy as np

from runtime.checkpoint import CheckpointError, conform_tensors
from runtime.dtypes import NUMPY_DTYPES, is_bf16
from runtime.pef.schema import Program, Symbol, Weights, WeightTensor


def weight_symbols(program: Program) -> list[tuple[int, Symbol]]:
    """The symbols a ``weights`` section holds, with their indices: every parameter and
    persistent buffer (non-persistent buffers come from the model at run time)."""
    non_persistent = {e.symbol for e in program.meta.non_persistent}
    return [
        (i, s)
        for i, s in enumerate(program.meta.symbols)
        if s.role in ("parameter", "buffer") and i not in non_persistent
    ]


def weights_section(
    program: Program,
    tensors: Mapping[str, np.ndarray],
    source: str | os.PathLike[str],
    allowed: Collection[str] = (),
) -> Weights:
    """The ``weights`` section of ``program`` holding ``tensors`` (a checkpoint's model state,
    by name), each converted to its symbol's dtype. A missing tensor, a wrong shape or kind, or
    a tensor neither a symbol nor in ``allowed`` (the model's other state_dict names, e.g. the
    second name of a tied weight) is a ``CheckpointError`` naming it."""
    where = os.fspath(source)
    wanted = weight_symbols(program)
    arrays = conform_tensors(tensors, [s for _, s in wanted], f"{where}: model")
    known = set(allowed) | {s.name for _, s in wanted}
    extra = [name for name in arrays if name not in known]
    if extra:
        raise CheckpointError(
            f"{where}: model: unexpected tensor '{extra[0]}': not in the model or the PEF "
            "(a checkpoint of another model?)"
        )
    return Weights(
        source=os.path.basename(where),
        tensors=[
            WeightTensor(symbol=i, dtype=s.dtype, data=_little_endian(arrays[s.name]))
            for i, s in wanted
        ],
    )


def embedded_state(program: Program) -> dict[str, np.ndarray]:
    """The parameters and persistent buffers a PEF embeds, by symbol name ({} for a PEF
    without weights); bf16 values widened to float32, exactly, as ``load_checkpoint`` gives a
    bf16 checkpoint's (a session rounds them back to the same bf16; torch loads them)."""
    if program.weights is None:
        return {}
    symbols = program.meta.symbols
    state = {}
    for tensor in program.weights.tensors:
        sym = symbols[tensor.symbol]
        array = np.frombuffer(tensor.data, dtype=NUMPY_DTYPES[sym.dtype]).reshape(sym.shape)
        array = array.byteswap() if sys.byteorder == "big" else array
        state[sym.name] = array.astype(np.float32) if is_bf16(array.dtype) else array.copy()
    return state


def _little_endian(array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array)
    return (array.byteswap() if sys.byteorder == "big" else array).tobytes()
