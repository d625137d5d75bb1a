"""What rdu-compile runs: frontend, lowering pipeline, PEF, all in one process.

The IR stays in memory between stages; each stage's IR is also written next to the PEF
(``<name>.<stage>.mlir``) so users can read how their model was mapped.
"""

from __future__ import annotations

import gc
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import msgspec
import torch
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.utils.exceptions import VerifyException

from compiler.capacity import check_model_fits, check_sections_fit
from compiler.data_parallel import mark_data_parallel
from compiler.forked import Beside
from compiler.frontend import ModelSpec, build_dataflow
from compiler.ideal import counted_flops, step_ideal
from compiler.passes.emit_pef import module_to_program
from compiler.pipeline import apply_pass, lowering_passes
from compiler.provenance import Provenance
from compiler.report import make_report
from compiler.stage_dumps import StageDumps, count_ops
from compiler.targets import Target
from dialects import all_dialects
from runtime.machine.atomic import atomic_write_bytes
from runtime.pef import encode_pef
from runtime.pef.schema import Program, Weights

COMPILER_VERSION = "0.1.0"


@dataclass
class CompileResult:
    pef_path: Path
    pef_bytes: int
    log_path: Path
    op_counts: dict[str, int]
    """Number of ops per dialect in the final (placed) IR."""
    units: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per section: (PCUs, PMUs) used."""
    report_path: Path | None = None
    """``report.json`` (with ``report.html`` and ``trace.json`` beside it)."""
    summary: str = ""
    """The report's readable summary (also in the log)."""


def make_context() -> Context:
    ctx = Context()
    for name, factory in all_dialects().items():
        ctx.register_dialect(name, factory)
    from xdsl.dialects.arith import Arith
    from xdsl.dialects.builtin import Builtin
    from xdsl.dialects.math import Math

    for dialect in (Builtin, Arith, Math):
        if dialect.name not in ctx.registered_dialect_names:
            ctx.load_dialect(dialect)
    return ctx


@contextmanager
def verified_beside(module: ModuleOp, verify: bool = True) -> Iterator[None]:
    """Verify ``module`` as it is now in a child process (``compiler.forked``) while the
    ``with`` block runs: the final IR while the PEF and the report are made from it (GPT-2
    small's verification takes 0.7 s to 2 s, the PEF and the report about as long; both
    written after the block), the frontend's IR while the first pass lowers it (0.4 s). The
    child sends the verifier's error as data, raised at the end of the block in place of any
    error the block met. Where there is no ``os.fork``, the module is verified before the
    block; should the child die, it is verified after it, as it is then. ``verify=False``: no
    verification."""
    if not verify:
        yield
        return
    if not hasattr(os, "fork"):
        module.verify()
        yield
        return
    with Beside(partial(_verify_error, module)) as check:
        try:
            yield
        finally:  # the verifier's error first, in place of any other
            error = check.result()
            if error is not None:
                raise VerifyException(error)


def _verify_error(module: ModuleOp) -> str | None:
    """The verifier's error on ``module`` (None: valid), as data a child process sends."""
    try:
        module.verify()
    except VerifyException as error:
        return str(error)
    return None


def _optimizer_name(spec: ModelSpec, inference: bool) -> str:
    """The optimizer's family as the PEF records it: "sgd", "adamw", or "none"."""
    if inference or spec.optimizer is None:
        return "none"
    return "adamw" if isinstance(spec.optimizer, torch.optim.AdamW) else "sgd"


def compile_model(
    spec: ModelSpec,
    *,
    inference: bool,
    target: Target,
    out_dir: Path,
    pef_name: str,
    flags: list[str],
    source_hash: str,
    batch_size: int,
    log: list[str] | None = None,
    data_parallel: bool = False,
    opt_level: int = 1,
    verify_each_stage: bool = False,
    weights: Callable[[Program], Weights] | None = None,
) -> CompileResult:
    """Compile ``spec`` for ``target`` and write ``out_dir/pef_name.pef`` (atomically).

    ``weights`` (an inference PEF, ``rdu-compile --weights``): the weights section to store in
    the PEF, made from the compiled program (its symbols name the tensors and their dtypes).

    ``opt_level``: 1 fuses elementwise ops and cuts sections only where the fabric is full;
    0 fuses nothing and gives every op its own section (``compiler.pipeline``).
    The frontend's IR and the final IR are verified; ``verify_each_stage`` (rdu-compile
    ``--debug``) verifies the IR after every pass too, to name the pass that broke it (each
    verification of a GPT-sized module takes about 0.1 s)."""
    log = [] if log is None else log
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    stages: list[tuple[int, str]] = []  # (its line in the log, a stage): its counts at the end

    def note(stage: str, module: ModuleOp, changed: bool = True) -> None:
        dumps.write(stage, module, changed)  # and counts its ops, where it prints it
        stages.append((len(log), stage))
        log.append(f"[{time.perf_counter() - started:7.3f}s] {stage}: ")

    with StageDumps(out_dir, pef_name) as dumps, ExitStack() as beside:  # dumps: by the end
        batch = [(f"input.{i}", t) for i, t in enumerate(spec.example_inputs)]
        batch += [(f"target.{i}", t) for i, t in enumerate(spec.example_targets)]
        check_model_fits(target, spec.source_file, spec.module, batch)
        # the ideal's FLOPs, counted beside the trace (one core's work, for seconds)
        count = partial(counted_flops, spec, inference=inference)
        flops = beside.enter_context(Beside(count))
        aten_ops: dict[str, str] = {}
        module = build_dataflow(spec, inference=inference, ops=aten_ops, verify=False)
        check_sections_fit(target, spec.source_file, module)
        note("dataflow", module)
        ctx = make_context()
        passes = list(lowering_passes(target.spec, opt_level=opt_level))
        provenance = Provenance()  # what each unit implements, for the report's explorer
        for k, (stage, pass_) in enumerate(passes):
            with verified_beside(module, k == 0):  # the frontend's IR, beside the first pass
                changed = apply_pass(pass_, ctx, module)
            if verify_each_stage:
                module.verify()
            if stage in ("rdu_tile", "fused", "casts"):
                provenance.note_kernels(module, fused=stage != "rdu_tile")
            note(stage, module, changed)
        pef_path = out_dir / f"{pef_name}.pef"
        with verified_beside(module, not verify_each_stage):  # each stage's was, with --debug
            program = module_to_program(
                module,
                target,
                model_name=spec.name,
                batch_size=batch_size,
                compiler_version=COMPILER_VERSION,
                compile_flags=flags,
                source_hash=source_hash,
                optimizer=_optimizer_name(spec, inference),
                loss=not inference,
            )
            if data_parallel:
                program = mark_data_parallel(program)
            embedded = None if weights is None else weights(program)
            if embedded is not None:
                program = msgspec.structs.replace(program, weights=embedded)
            data = encode_pef(program)
            ideal = step_ideal(spec, program, target, flops.result())
            report = make_report(
                program, target, origins=provenance.origins(), ops=aten_ops, ideal=ideal
            )  # written once the IR is known valid, as the PEF
        for collective in program.meta.collectives if data_parallel else ():
            log.append(
                f"  data-parallel: {collective.op} of {len(collective.symbols)} tensors "
                f"before section {collective.before}"
            )
        if embedded is not None:
            log.append(f"  weights: {len(embedded.tensors)} tensors from {embedded.source}")
        atomic_write_bytes(pef_path, data)  # what runtime.pef.write_pef does, encoding once
        size = len(data)
        log.append(f"[{time.perf_counter() - started:7.3f}s] wrote {pef_path} ({size} bytes)")
        units = {  # a parallel PCU is its copies, a buffer its PMUs
            s.name: (sum(math.prod(p.parallel) for p in s.pcus), sum(p.pmus for p in s.pmus))
            for s in program.sections
        }
        for name, (pcus, pmus) in units.items():
            log.append(f"  section {name}: {pcus} PCUs, {pmus} PMUs")
        written = report.write(out_dir)
        log.append(
            f"[{time.perf_counter() - started:7.3f}s] wrote {written.json}, {written.html.name}, "
            f"{written.trace.name}"
        )
        log.append(report.summary)
    for line, stage in stages:
        log[line] += ", ".join(f"{k} {v}" for k, v in dumps.counts[stage].items())
    log_path = out_dir / f"{pef_name}.log"  # after the dumps: every file is there
    atomic_write_bytes(log_path, ("\n".join(log) + "\n").encode())
    return CompileResult(
        pef_path, size, log_path, count_ops(module), units, written.json, report.summary
    )


COMPILE_GC_THRESHOLDS = (50_000, 50, 100)
"""Python's cyclic garbage collector's thresholds while compiling: about a seventieth as often
as its default (700, 10, 10). A compile makes and drops millions of IR objects in cycles (ops,
their blocks and uses); with the default, the collections took 5.5 s of 34 s of GPT-2 small's
compile in memory (``gc.callbacks``), 1.3 s at (10_000, 50, 100). rdu-compile sets them too
(``tools.rdu_compile._collect_again``, after freezing what torch and the model loaded): at
(10_000, 50, 100) its youngest generation was collected 199 times (0.5 s) and the next 3 times
(0.6 s: each walks every object that outlived a young collection, most of the IR); now 31
times (0.6 s) and the next not at all, its garbage (cycles of ops dropped by rewrites, about
170,000 objects) left for later: 30 MB more at the peak (592 MB)."""


@contextmanager
def collecting_less() -> Iterator[None]:
    """``COMPILE_GC_THRESHOLDS`` for the time of the ``with`` block, then the thresholds as they
    were (the garbage left is collected as usual from then on)."""
    thresholds = gc.get_threshold()
    gc.set_threshold(*COMPILE_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def compile_in_memory(
    spec: ModelSpec,
    *,
    inference: bool,
    target: Target,
    opt_level: int = 1,
    min_vectors: int | None = None,
    balance: bool = True,
    flags: list[str] | None = None,
    source_hash: str = "",
    batch_size: int | None = None,
) -> Program:
    """The PEF program for ``spec`` without writing any file (tests, benchmarks, notebooks).

    ``min_vectors``: parallelize-units' threshold (None: its default); ``balance``: its
    spreading of each section's units over the free PCUs (on by default). ``flags``,
    ``source_hash`` and ``batch_size`` are what ``meta`` records (None: ``--inference`` or
    nothing, and the first input's length); with rdu-compile's own
    (``tools.rdu_compile.compile_flags``) the program encodes to the bytes rdu-compile writes."""
    default_batch = len(spec.example_inputs[0]) if spec.example_inputs else 1
    with collecting_less():
        module = build_dataflow(spec, inference=inference)
        ctx = make_context()
        passes = lowering_passes(
            target.spec, opt_level=opt_level, min_vectors=min_vectors, balance=balance
        )
        for _, pass_ in passes:
            pass_.apply(ctx, module)
        module.verify()
        return module_to_program(
            module,
            target,
            model_name=spec.name,
            batch_size=batch_size if batch_size is not None else default_batch,
            compiler_version=COMPILER_VERSION,
            compile_flags=flags if flags is not None else ["--inference"] if inference else [],
            source_hash=source_hash,
            optimizer=_optimizer_name(spec, inference),
            loss=not inference,
        )
