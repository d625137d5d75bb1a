"""What ``rdu-compile --data-parallel`` adds to a training PEF: the collectives between sections.

The same PEF runs on every rank, each rank on its own shard of the batch. So that the ranks
stay one model, the PEF marks (``meta.collectives``, run by the runtime's training session):

- the gradients the optimizer reads, averaged across ranks (``allreduce_mean``) just before the
  first optimizer section that reads them: the mean of the ranks' mean-reduced losses'
  gradients is the gradient of the whole (global) batch;
- the buffers a section updates (batch-norm running statistics), broadcast from rank 0 before
  the first section of each step, as torch's DistributedDataParallel does.

    symbol 4: fc1.weight.grad f32[128,64] gradient     (written by backward, read by optimizer)
    ->  Collective(op="allreduce_mean", before="optimizer", symbols=[4, ...])

The host runs the collectives on the tensors in DRAM, so a data-parallel PEF keeps nothing on
chip: its co-residency (``Program.resident``, co-place-sections) is dropped, and its sections
are loaded and exchange their tensors through DRAM as when they do not fit together (their
placement on units of their own stays valid for each section alone).
"""

from __future__ import annotations

import msgspec

from runtime.pef.schema import Collective, Program


class DataParallelError(Exception):
    """A program that cannot be made data-parallel (one line)."""


def mark_data_parallel(program: Program) -> Program:
    """``program`` with ``meta.data_parallel`` set and its collectives listed."""
    meta = program.meta
    if meta.inference:
        raise DataParallelError(
            "--data-parallel is for training: an inference PEF has no gradients to average"
        )
    symbols = meta.symbols
    gradients: dict[str, list[int]] = {}
    done: set[int] = set()
    for section in program.sections:
        if section.kind != "optimizer":
            continue
        for i in section.inputs:
            if symbols[i].role == "gradient" and i not in done:
                gradients.setdefault(section.name, []).append(i)
                done.add(i)
    if not gradients:
        raise DataParallelError("--data-parallel: no optimizer section reads a gradient")
    collectives = []
    written = {o.symbol for section in program.sections for o in section.outputs}
    updated = sorted(i for i in written if symbols[i].role == "buffer")
    if updated:
        collectives.append(
            Collective(op="broadcast", before=program.sections[0].name, symbols=updated)
        )
    for before, indices in gradients.items():
        collectives.append(Collective(op="allreduce_mean", before=before, symbols=sorted(indices)))
    return msgspec.structs.replace(
        program,
        meta=msgspec.structs.replace(meta, data_parallel=True, collectives=collectives),
        resident=None,
    )
