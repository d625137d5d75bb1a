"""rdu-run: run a PEF on the emulated fabric: a test run, training, or inference.

    rdu-run model.py --pef out/mlp/mlp.pef --test
    rdu-run model.py --pef out/mlp/mlp.pef --num-epochs 4 --ckpt-dir out/mlp/checkpoints
    rdu-run model.py --pef out/mlp-inference/mlp-inference.pef --inference --init-ckpt-path C
    rdu-run model.py --pef out/mlp-dp/mlp-dp.pef --data-parallel --world-size 2
    torchrun --standalone --nproc-per-node 2 -m tools.rdu_run model.py --pef P --data-parallel

This command never imports the compiler: it needs only the runtime, numpy, and the model file
(for data, the initial weights and the names of the model's state).
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

import click
import numpy as np

from tools.cli import (
    MODEL_COMMAND_SETTINGS,
    OneLineCommand,
    ToolError,
    guarded,
    host_memory_bytes,
    model_namespace,
    print_help,
    size_text,
)

if TYPE_CHECKING:
    from tools.metrics_log import RunMetrics


@click.command(cls=OneLineCommand, context_settings=MODEL_COMMAND_SETTINGS)
@click.argument("model_path", required=False, metavar="MODEL.py")
@click.option("--pef", "pef_path", help="The compiled program (from rdu-compile).")
@click.option("--test", "test_run", is_flag=True, help="A short test run on one batch.")
@click.option("--inference", is_flag=True, help="Forward only; write results.")
@click.option("--num-epochs", type=int, default=1, show_default=True)
@click.option("--num-steps", type=int, default=None, help="Stop after this many steps in all.")
@click.option("--lr", type=float, default=None, help="Learning rate [default: the model's].")
@click.option(
    "--momentum",
    type=float,
    default=None,
    help="SGD momentum [default: the model's].",
)
@click.option("--weight-decay", type=float, default=None, help="[default: the model's]")
@click.option("--ckpt-dir", default=None, help="Where to write checkpoints.")
@click.option("--ckpt-every", type=int, default=100, show_default=True, help="Steps between.")
@click.option("--init-ckpt-path", default=None, help="Start from (resume) this checkpoint.")
@click.option(
    "--reset-optimizer",
    is_flag=True,
    help="Start the optimizer state at zero instead of taking it from --init-ckpt-path (one "
    "from another optimizer, or without optimizer state).",
)
@click.option(
    "--allow-source-change",
    is_flag=True,
    help="Run a PEF although MODEL.py changed since it was compiled (comments, data code); "
    "the model's parameters and buffers must still match the PEF's.",
)
@click.option(
    "--results-dir", default=None, help="Inference results [default: out/<name>/results]."
)
@click.option("--log-every", type=int, default=20, show_default=True, help="Steps between lines.")
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Init and data order seed."
)  # both checked by check_options, with the other numbers, before anything is loaded
@click.option(
    "--arch",
    default=None,
    help="The fabric to run on: a preset name or a target file FILE.toml [default: the PEF's "
    "own target]; a PEF compiled for another target is refused.",
)
@click.option(
    "--profile",
    is_flag=True,
    help="At the end, print every section's counters (runs, modelled cycles and time, FLOPs, "
    "off-chip bytes, fraction of peak) and write trace.json, the run's timeline (beside the "
    "checkpoints; inference and --test: in the results folder).",
)
@click.option(
    "--data-parallel",
    is_flag=True,
    help="Train as one rank of a data-parallel job (under torchrun; see --world-size).",
)
@click.option(
    "--world-size",
    type=int,
    default=None,
    help="Launch this many data-parallel ranks on this machine (implies --data-parallel).",
)
@click.option(
    "--dp-timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds a rank waits for the others in a collective before it gives up.",
)
@click.option("--debug", is_flag=True, help="Full tracebacks and verbose logs.")
@click.option("--help", "show_help", is_flag=True, help="Show this message and the model's.")
@click.pass_context
def rdu_run(
    ctx: click.Context, model_path: str | None, show_help: bool, debug: bool, **opts
) -> None:
    """Run MODEL.py's compiled PEF on the emulated RDU fabric."""

    def body() -> int:
        if show_help:
            print_help(ctx, model_path, debug)
            return 0
        if model_path is None or opts["pef_path"] is None:
            raise ToolError("usage: rdu-run MODEL.py --pef PEF [--test | --inference] (see --help)")
        data_parallel = opts["data_parallel"] or opts["world_size"] is not None
        if data_parallel and (opts["test_run"] or opts["inference"]):
            raise ToolError("--data-parallel is for training; leave it out with --test/--inference")
        if not data_parallel and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ToolError(
                f"started as one of {os.environ['WORLD_SIZE']} ranks (by torchrun): "
                "add --data-parallel"
            )
        check_options(opts)
        check_mode_options(ctx, opts)
        if opts["world_size"] is not None:
            from tools.data_parallel import launch

            return launch(ctx, model_path, opts, debug)
        run = Run(model_path, ctx.args, debug=debug, **opts)
        if opts["test_run"]:
            return run.test()
        if opts["inference"]:
            return run.inference()
        if run.communicator is not None:
            from tools.data_parallel import as_rank

            return as_rank(run.communicator, run.train, debug)
        return run.train()

    guarded("rdu-run", debug, body)


class Run:
    """One rdu-run invocation: the PEF, the model file and the state they share."""

    def __init__(self, model_path: str, extra: list[str], *, debug: bool, **opts) -> None:
        from runtime.pef import read_pef
        from tools.model_file import load_model_file

        self.opts = opts
        self.debug = debug
        self.program = read_pef(opts["pef_path"])
        meta = self.program.meta
        self.check_memory()
        if opts.get("arch"):
            from runtime.pef.target_file import check_same_target

            check_same_target(meta.target, opts["arch"], opts["pef_path"])
        self.model_file = load_model_file(model_path)
        self.args = model_namespace(
            self.model_file,
            extra,
            {"batch_size": meta.batch_size, "seed": opts["seed"], "epoch": 0, "debug": debug},
        )
        self.check_model()
        self.symbols = {s.name: s for s in meta.symbols}
        self.inputs = sorted(
            (s.name for s in meta.symbols if s.role == "input"), key=lambda n: int(n.split(".")[1])
        )
        self.labels = sorted(
            (s.name for s in meta.symbols if s.role == "label"), key=lambda n: int(n.split(".")[1])
        )
        self.out_dir = Path(opts["pef_path"]).resolve().parent
        self.communicator = None
        """This process's place in a data-parallel job (``--data-parallel``), else None."""
        self.recorder = None
        """With ``--profile``: every section run and collective, for ``trace.json``."""
        if opts.get("profile"):
            from runtime.machine.trace import RunRecorder

            self.recorder = RunRecorder()
        if opts.get("data_parallel"):
            from tools.data_parallel import check_meta, join

            check_meta(meta, opts["pef_path"])
            self.communicator = join(opts.get("dp_timeout", 300.0))
            if self.recorder is not None:
                from runtime.distributed import TimedCommunicator

                self.communicator = TimedCommunicator(self.communicator, self.recorder)

    @property
    def is_rank0(self) -> bool:
        """Whether this process prints and writes files (rank 0, or not data-parallel)."""
        return self.communicator is None or self.communicator.rank == 0

    @property
    def world_size(self) -> int:
        return 1 if self.communicator is None else self.communicator.world_size

    # -- state ---------------------------------------------------------------------------

    _ITEM_BYTES = {"f32": 4, "i64": 8, "i1": 1}

    def check_memory(self) -> None:
        """Refuse, before anything is allocated, a PEF whose tensors alone (its symbols: the
        batch, the state, activations and gradients) take more than this machine's memory, as
        one compiled with a huge ``-b`` would: the emulated off-chip memory is host memory."""
        memory = host_memory_bytes()
        if memory is None:
            return
        sizes = {
            s.name: math.prod(s.shape) * self._ITEM_BYTES.get(s.dtype, 4)
            for s in self.program.meta.symbols
        }
        total = sum(sizes.values())
        if total > memory:
            largest = max(sizes, key=lambda name: sizes[name])
            raise ToolError(
                f"{self.opts['pef_path']}: its tensors take {size_text(total)} ('{largest}' "
                f"{size_text(sizes[largest])}, batch {self.program.meta.batch_size}), more than "
                f"this machine's {size_text(memory)} of memory: compile with a smaller -b"
            )

    def check_model(self) -> None:
        """Refuse a stale PEF: one compiled from another version of the model file (its
        sha256, ``meta.source_hash``; unless ``--allow-source-change``; a PEF compiled in
        memory has none) or for another module structure (parameter and buffer names, shapes
        and dtypes against the PEF's symbols; always)."""
        meta = self.program.meta
        pef, path = self.opts["pef_path"], self.model_file.path
        if (
            meta.source_hash
            and not self.opts.get("allow_source_change")
            and self.model_file.source_hash() != meta.source_hash
        ):
            raise ToolError(
                f"{pef} was compiled from another version of {path} (its sha256 differs): "
                "recompile it, or pass --allow-source-change if only comments or data code "
                "changed"
            )
        from tools.model_fit import optimizer_mismatch, structure_mismatch

        model = self.torch_model()
        problem = structure_mismatch(model, meta.symbols)
        if not problem and not meta.inference and meta.optimizer != "none":
            updated = {
                meta.symbols[out.symbol].name
                for section in self.program.sections
                if section.kind == "optimizer"
                for out in section.outputs
                if meta.symbols[out.symbol].role == "parameter"
            }
            optimizer = self.torch_optimizer(model)
            problem = optimizer_mismatch(optimizer, model, meta.optimizer, updated)
        if problem:
            raise ToolError(f"{pef} does not fit the model of {path}: {problem}; recompile it")

    def torch_model(self):
        import torch

        torch.manual_seed(self.opts["seed"])
        return self.model_file.call("model", self.args)

    def initial_state(self) -> tuple[dict[str, np.ndarray], int]:
        """Parameters, buffers and optimizer state for the PEF, and the step to start from.

        Non-persistent buffers (``meta.non_persistent``) are never in a checkpoint (nor in the
        model's ``state_dict``): they always come from the model, which the session checks
        against the values the PEF was compiled for. An inference PEF with embedded weights
        (``rdu-compile --weights``) runs them, unless ``--init-ckpt-path`` gives others (said
        on stderr): the checkpoint's replace them, rounded to the PEF's dtypes as they would
        have been at compile time."""
        from runtime.checkpoint import load_checkpoint

        symbols = self.program.meta.symbols
        non_persistent = {symbols[e.symbol].name for e in self.program.meta.non_persistent}
        weights = [
            s for s in symbols if s.role in ("parameter", "buffer") and s.name not in non_persistent
        ]
        if self.opts["init_ckpt_path"]:
            path = self.opts["init_ckpt_path"]
            model = self.torch_model()
            checkpoint = load_checkpoint(
                path, expected=weights, allowed=set(model.state_dict()) | non_persistent
            )
            state = {s.name: checkpoint["model"][s.name] for s in weights}
            if self.program.weights is not None and self.is_rank0:
                click.echo(
                    f"note: --init-ckpt-path: the weights of {path} replace the "
                    f"{self.program.weights.source} weights embedded in the PEF",
                    err=True,
                )
            if non_persistent:
                state.update(self.non_persistent_buffers(model, non_persistent))
            state.update(self.checkpoint_optimizer(path, checkpoint))
            return state, checkpoint["step"]
        if self.program.weights is not None:
            from runtime.weights import embedded_state

            state = embedded_state(self.program)
            if non_persistent:  # the model is built only for them
                state.update(self.non_persistent_buffers(self.torch_model(), non_persistent))
            return state, 0
        from tools.reference import as_numpy

        model = self.torch_model()
        initial = {k: as_numpy(v) for k, v in model.state_dict().items()}
        state = {s.name: initial[s.name] for s in weights if s.name in initial}
        state.update(self.non_persistent_buffers(model, non_persistent))
        return state, 0

    def checkpoint_optimizer(self, path: str, checkpoint) -> dict[str, np.ndarray]:
        """The optimizer state of ``checkpoint`` for the PEF's optimizer_state symbols.

        A checkpoint without optimizer state, from another optimizer, or lacking a tensor a
        resumed step needs is refused (resuming would restart the state at zero without a
        word), unless ``--reset-optimizer``: then the state starts at zero, said on stderr."""
        from runtime.checkpoint import optimizer_from_torch, optimizer_mismatch

        meta = self.program.meta
        moments = [s for s in meta.symbols if s.role == "optimizer_state"]
        if meta.inference or meta.optimizer == "none":
            return {}
        problem = optimizer_mismatch(checkpoint, meta.optimizer)
        if self.opts.get("reset_optimizer"):
            if self.is_rank0:
                click.echo(
                    f"note: --reset-optimizer: the {meta.optimizer} optimizer state starts at "
                    f"zero at step {checkpoint['step']}",
                    err=True,
                )
            return {}
        if problem:
            raise ToolError(f"{path}: {problem}; pass --reset-optimizer to start it at zero")
        if not moments:
            return {}
        state = optimizer_from_torch(
            checkpoint["optimizer"], self.parameter_names(), meta.optimizer, expected=moments
        )
        missing = [s.name for s in moments if s.name not in state]
        if missing and checkpoint["step"] > 0:
            raise ToolError(
                f"{path}: optimizer state lacks '{missing[0]}' after step {checkpoint['step']}; "
                "pass --reset-optimizer to start it at zero"
            )
        return state

    @staticmethod
    def non_persistent_buffers(model, names: set[str]) -> dict[str, np.ndarray]:
        """The values of the model's buffers ``names`` (registered with ``persistent=False``;
        a bfloat16 one, RecurrentGemma's normalizer, as ``ml_dtypes.bfloat16``)."""
        from tools.reference import as_numpy

        buffers = dict(model.named_buffers(remove_duplicate=False))
        return {n: as_numpy(buffers[n].cpu()) for n in sorted(names) if n in buffers}

    def parameter_names(self) -> list[str]:
        """The parameters the model's optimizer holds, in its order (what torch's optimizer
        state_dict indexes): ``parameters()`` order, or the optimizer's own choice, e.g. only
        the trainable ones of a model with frozen layers."""
        model = self.torch_model()
        names = {id(p): name for name, p in model.named_parameters()}
        optimizer = self.torch_optimizer(model)
        return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]

    def torch_optimizer(self, model):
        """The model file's optimizer over ``model.parameters()`` (SGD, lr 0.01 without one)."""
        return self.model_file.optimizer(model.parameters(), self.args)

    def hyperparameters(self) -> dict[str, float]:
        """The model's optimizer settings, overridden from the command line."""
        optimizer = self.torch_optimizer(self.torch_model())
        group = optimizer.param_groups[0]
        hyper = {"lr": group["lr"], "weight_decay": group.get("weight_decay", 0.0)}
        if "momentum" in group:
            hyper["momentum"] = group["momentum"]
            hyper["dampening"] = group.get("dampening", 0.0)
        if "betas" in group:
            hyper["beta1"], hyper["beta2"] = group["betas"]
            hyper["eps"] = group["eps"]
        for key in ("lr", "momentum", "weight_decay"):
            if self.opts[key] is not None:
                hyper[key] = self.opts[key]
        return hyper

    def batch(self, inputs: tuple, targets: tuple) -> dict[str, np.ndarray]:
        """A host batch bound to the PEF's input and label symbols: as many tensors (CPU torch
        tensors or numpy arrays) as the PEF takes, of its dtypes."""
        if len(inputs) != len(self.inputs):
            raise ToolError(f"data() gave {len(inputs)} inputs, the PEF takes {len(self.inputs)}")
        if self.labels and len(targets) != len(self.labels):  # an inference PEF takes none
            raise ToolError(f"data() gave {len(targets)} targets, the PEF takes {len(self.labels)}")
        feed = {
            name: _host_array(name, value)
            for names, values in ((self.inputs, inputs), (self.labels, targets))
            for name, value in zip(names, values, strict=False)
        }
        for name, value in feed.items():
            self._check_dtype(name, value)
            self._check_rows(name, value)
        return feed

    _EXACT = {"f32": np.float32, "i64": np.int64, "i1": np.bool_}
    """The numpy dtype a batch tensor of each PEF dtype must have."""

    def _check_dtype(self, name: str, value: np.ndarray) -> None:
        """A batch tensor of another dtype than the PEF's (float64 inputs, int32 labels) is
        refused, as torch's model refuses it (``mat1 and mat2 must have the same dtype``,
        cross entropy's ``expected scalar type Long``); the session itself would cast it. Other
        kinds (a float label) are the session's one-line refusal."""
        sym = self.symbols.get(name)
        if sym is None or value.dtype == self._EXACT.get(sym.dtype, value.dtype):
            return
        kinds = {"f32": "f", "i64": "iu", "i1": "b"}
        if value.dtype.kind in kinds.get(sym.dtype, ""):
            role = "input" if sym.role == "input" else "label"
            raise ToolError(
                f"{role} '{name}' is {value.dtype} {list(value.shape)}, the PEF expects "
                f"{sym.dtype} {sym.shape}: convert it in data() (torch's model refuses it too)"
            )

    def batches(self, split: str, epoch: int) -> Iterator[tuple[tuple, tuple]]:
        """The model's batches; data-parallel, global batches (``shard`` takes this rank's).

        A global batch is what ``data()`` yields for ``world_size x`` the PEF's batch: every
        rank draws the same ones (same seed and epoch) and checks them whole, so a bad batch
        stops every rank at the same step; rank r trains on its r-th slice of rows.
        """
        self.args.epoch = epoch
        if self.world_size == 1:
            return self.model_file.batches(split, self.args)
        args = copy.copy(self.args)
        args.batch_size = self.args.batch_size * self.world_size
        return self.model_file.batches(split, args)

    def shard(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """This rank's rows of a global batch (checked by ``batch``): the batch itself unless
        data-parallel over more than one rank."""
        if self.world_size == 1:
            return feed
        from runtime.distributed import shard

        comm = self.communicator
        assert comm is not None
        return {name: shard(value, comm.rank, comm.world_size) for name, value in feed.items()}

    def _check_rows(self, name: str, value: np.ndarray) -> None:
        """A global batch of exactly ``world_size x`` the PEF's rows: a shard of another size
        would drop rows without a word (or differ between ranks)."""
        sym = self.symbols.get(name)
        if self.world_size == 1 or sym is None or not sym.shape:
            return
        rows = self.world_size * sym.shape[0]
        if value.ndim == 0 or value.shape[0] != rows:
            role = "input" if sym.role == "input" else "label"
            raise ToolError(
                f"{role} '{name}' of the global batch is {list(value.shape)}: "
                f"{self.world_size} ranks of the PEF's batch {sym.shape[0]} take {rows} rows "
                "(data() must yield batches of args.batch_size rows)"
            )

    def metrics(self, losses: list[float], correct: int, seen: int) -> tuple[float, float | None]:
        """Mean loss and accuracy, over every rank's batches when data-parallel."""
        totals = np.array([sum(losses), len(losses), correct, seen], dtype=np.float64)
        if self.communicator is not None:
            totals = self.communicator.allreduce_sum([totals], "the all-reduce of the metrics")[0]
        loss = totals[0] / totals[1] if totals[1] else math.nan
        return loss, (totals[2] / totals[3] if totals[3] else None)

    @property
    def ckpt_dir(self) -> Path:
        """Where checkpoints go (``--ckpt-dir``, else ``checkpoints`` beside the PEF)."""
        return Path(self.opts["ckpt_dir"] or self.out_dir / "checkpoints")

    def save(
        self, session, step: int, name: str, state: dict[str, np.ndarray] | None = None
    ) -> Path:
        """A checkpoint that loads into the torch model (tied weights under every name): the
        session's state, or ``state`` (the state of step ``step``) when given."""
        from runtime.checkpoint import optimizer_to_torch, save_checkpoint

        state = session.state() if state is None else state
        model = self.torch_model()
        by_storage = {}
        for key, value in model.state_dict().items():
            by_storage.setdefault(value.data_ptr(), []).append(key)
        weights = {}
        for keys in by_storage.values():
            value = next((state[k] for k in keys if k in state), None)
            for key in keys:
                weights[key] = value if value is not None else model.state_dict()[key].numpy()
        optimizer = None
        if self.program.meta.optimizer != "none":
            optimizer = optimizer_to_torch(
                state,
                self.parameter_names(),
                self.program.meta.optimizer,
                self.hyperparameters(),
                step,
            )
        path = self.ckpt_dir / name
        try:
            save_checkpoint(path, model=weights, optimizer=optimizer, step=step)
        except OSError as error:  # the disk is full, the folder was removed...
            raise ToolError(
                f"{path}: cannot write the checkpoint: {error.strerror or error}"
            ) from error
        return path

    # -- modes ---------------------------------------------------------------------------

    def test(self) -> int:
        """Configure and run every section once on one batch; check shapes and finiteness."""
        from runtime.session import InferenceSession, TrainingSession

        if self.recorder is not None:
            check_output_dir(self.results_dir, "--results-dir")  # trace.json goes there
        state, _ = self.initial_state()
        self.check_finite_state(state)
        inputs, targets = next(iter(self.batches("train" if not self.is_inference else "test", 0)))
        feed = self.batch(inputs, targets)
        self.check_labels(feed, "the test batch")
        if self.is_inference:
            session = InferenceSession(self.program, state)
            self.record(session)
            outputs = session.run(feed)
        else:
            session = TrainingSession(self.program, state)
            self.record(session)
            result = session.step(feed, self.hyperparameters())
            outputs = dict(result.outputs, loss=np.asarray(result.loss))
        for name, value in outputs.items():
            symbol = self.symbols.get(name)
            if symbol is not None and list(np.shape(value)) != list(symbol.shape):
                raise ToolError(
                    f"output {name} has shape {np.shape(value)}, expected {symbol.shape}"
                )
            if not np.all(np.isfinite(value)):
                raise ToolError(f"output {name} is not finite")
        names = ", ".join(s.name for s in self.program.sections)
        click.echo(f"test run passed: sections {names} ran; outputs {', '.join(outputs)} finite")
        self.profile(session, self.results_dir)
        return 0

    @property
    def results_dir(self) -> Path:
        """Where inference results go (``--results-dir``, else ``results`` beside the PEF)."""
        return Path(self.opts["results_dir"] or self.out_dir / "results")

    def record(self, session) -> None:
        """With ``--profile``: record every section the session's fabric runs."""
        if self.recorder is not None:
            self.recorder.attach(session.fabric)

    def profile(self, session, folder: Path) -> None:
        """With ``--profile``: the per-section counters the fabric kept while it ran, and the
        run's timeline, ``folder/trace.json`` (``runtime.machine.trace``)."""
        if not self.opts.get("profile") or not self.is_rank0:
            return
        from runtime.machine.perf import format_report
        from runtime.machine.trace import run_trace, write_trace

        counters = {k: c for k, c in session.fabric.counters.items() if c.runs}
        target = self.program.meta.target.name
        click.echo(f"profile (target {target}, model runtime/machine/perf.py):")
        click.echo(format_report(counters))
        if self.recorder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)  # checked before the run
        path = write_trace(folder / "trace.json", run_trace(self.program, self.recorder))
        click.echo(f"wrote {path} (open it in ui.perfetto.dev or chrome://tracing)")

    @property
    def is_inference(self) -> bool:
        return self.program.meta.inference

    # -- checks ----------------------------------------------------------------------------

    def check_finite_state(self, state: dict[str, np.ndarray]) -> None:
        """Refuse a start from NaN or inf weights (a checkpoint of a diverged run): every
        step after it would be NaN too."""
        name = _first_non_finite(state)
        if name is not None:
            source = self.opts["init_ckpt_path"] or (
                "the PEF's embedded weights"
                if self.program.weights is not None
                else "the model's initial state"
            )
            raise ToolError(f"{source}: tensor '{name}' {_non_finite_summary(state[name])}")

    def check_hyperparameters(self, hyper: dict[str, float]) -> None:
        """The checks torch's optimizers make (and finiteness, in float32: the PEF's inputs are
        float32), before the first step; an option the PEF's optimizer has no input for (SGD's
        ``--momentum`` to AdamW, or to SGD compiled without momentum) is refused, not dropped."""
        inputs = {s.name for s in self.program.meta.symbols if s.role == "hyperparameter"}
        for key in ("lr", "momentum", "weight_decay"):
            if self.opts[key] is not None and key not in inputs:
                raise ToolError(
                    f"--{key.replace('_', '-')} {self.opts[key]}: the PEF's optimizer "
                    f"({self.program.meta.optimizer}) has no {key} (it is compiled from the "
                    "model's optimizer(): recompile with one)"
                )
        for key, ok, rule in _HYPER_RULES:
            if key not in hyper:
                continue
            value = float(hyper[key])
            if _finite32(value) and ok(value):
                continue
            if math.isfinite(value) and ok(value):
                rule += " (as the PEF's float32, at most 3.4e38)"
            if key in ("lr", "momentum", "weight_decay") and self.opts[key] is not None:
                where = f"--{key.replace('_', '-')} {self.opts[key]}"
            else:
                where = f"the model's optimizer has {key} {value}"
            raise ToolError(f"{where}: {key} must be {rule}")

    def check_labels(self, feed: dict[str, np.ndarray], where: str) -> None:
        """Class labels outside ``[0, classes)`` (other than cross entropy's ignore_index
        -100), which torch's cross entropy refuses and the PEF's one-hot selection would
        silently drop: for a classifier, a 1-d integer label per row of 2-d logits."""
        logits = self.symbols.get("output.0")
        if logits is None or len(logits.shape) != 2 or not self.labels:
            return
        rows, classes = logits.shape
        name = self.labels[0]
        symbol = self.symbols[name]
        labels = feed.get(name)
        if symbol.dtype != "i64" or list(symbol.shape) != [rows] or labels is None:
            return
        labels = np.asarray(labels)
        if labels.dtype.kind not in "iu" or labels.shape != (rows * self.world_size,):
            return  # the session refuses it, naming both shapes
        bad = (labels < 0) | (labels >= classes)
        bad &= labels != IGNORE_INDEX
        if bad.any():
            row = int(np.argmax(bad))
            raise ToolError(
                f"{where}: label '{name}' row {row}{_rank_of(row, rows, self.world_size)} is "
                f"{int(labels[row])}, outside the {classes} classes [0, {classes}) of output.0 "
                "(torch's cross_entropy raises)"
            )

    # -- training ------------------------------------------------------------------------

    def train(self) -> int:
        """Train to ``--num-steps`` (or ``--num-epochs``); ``last.pt`` is written at the end
        and on any stop after the state was loaded (Ctrl-C, SIGTERM, an error)."""
        from runtime.session import TrainingSession

        if self.is_inference:
            raise ToolError(
                f"{self.opts['pef_path']} is an inference PEF; compile without --inference to train"
            )
        if self.program.meta.optimizer == "none":
            raise ToolError(
                f"{self.opts['pef_path']} was compiled without an optimizer (it computes "
                "gradients only): it cannot train"
            )
        if self.is_rank0:
            check_output_dir(self.ckpt_dir, "--ckpt-dir")
        state, start = self.initial_state()
        self.check_finite_state(state)
        hyper = self.hyperparameters()
        self.check_hyperparameters(hyper)
        session = TrainingSession(self.program, state, step=start, communicator=self.communicator)
        session.seed = self.opts["seed"]  # dropout's random numbers
        self.record(session)
        with _terminate_as_interrupt():
            try:
                return self._train(session, hyper)
            except Terminated as stop:  # before the first step (finding the place to resume)
                click.echo(f"rdu-run: error: {stop.what}", err=True)
                return stop.code

    def _epoch_length(self, start: int) -> int | None:
        """The number of batches of an epoch when a resumed run needs it to find its place
        (``start`` past epoch 0's end), drawn lazily: None when ``start`` is within epoch 0."""
        if start == 0:
            return None
        count = 0
        for _ in self.batches("train", 0):
            count += 1
            if count > start:
                return None
        if count == 0:
            raise ToolError("data('train') yields no full batch")
        return count

    def _check_total(self, total: int, length: int | None) -> None:
        """``--num-epochs`` of ``length`` steps each within ``MAX_STEPS`` (known before the first
        step when resuming past epoch 0, else when epoch 0 ends, drawn lazily)."""
        from tools.data_parallel import every_rank

        if total > MAX_STEPS:
            raise every_rank(
                ToolError(
                    f"--num-epochs {self.opts['num_epochs']}: {length} steps an epoch make "
                    f"{total} steps, more than the {MAX_STEPS} (2**24) a run counts; pass "
                    "--num-steps or fewer epochs"
                )
            )

    def _train(self, session, hyper: dict[str, float]) -> int:
        from tools.data_parallel import every_rank, is_every_rank, on_every_rank

        start = session.step_count  # rank 0's, when data-parallel
        length = self._epoch_length(start)
        epochs = self.opts["num_epochs"]
        total = self.opts["num_steps"] or (length * epochs if length else None)
        if total is not None:
            self._check_total(total, length)
        if total is not None and start >= total:
            target = f"--num-steps {total}" if self.opts["num_steps"] else f"--num-epochs {epochs}"
            click.echo(
                f"rdu-run: nothing to train: {self.opts['init_ckpt_path']} is at step {start}, "
                f"at or past the target step {total} ({target}, counted from step 0); "
                "wrote nothing",
                err=True,
            )
            return 0
        progress = _progress(total, start, enabled=self.is_rank0)
        metrics = self.metrics_log(session, start)
        step = start
        epoch, skip = divmod(start, length) if length else (0, start)
        losses: list[float] = []
        correct = seen = 0
        started, paused = time.perf_counter(), 0.0  # paused: evaluating, writing checkpoints
        finite: tuple[dict[str, np.ndarray], int] | None = None  # set when a step went NaN
        try:
            while total is None or step < total:
                batches = self.batches("train", epoch)
                with on_every_rank():  # the same data on every rank
                    drawn = sum(1 for _ in itertools.islice(batches, skip))
                trained, ended = 0, False
                while total is None or step < total:
                    where = f"step {step + 1} (batch {drawn} of epoch {epoch})"
                    with on_every_rank():  # the whole global batch checked on every rank
                        batch = next(batches, None)
                        if batch is None:
                            ended = True
                            break
                        feed = self.batch(*batch)
                        self.check_labels(feed, where)
                    drawn += 1
                    local = self.shard(feed)
                    before = session.state()
                    if step == start:  # steps/s: not the import of the data (scikit-learn...)
                        started = time.perf_counter()
                        metrics.restart()
                    with _interrupts_between_steps():
                        result = session.step(local, hyper)  # data-parallel: the ranks' mean loss
                        step += 1
                    trained += 1
                    if not math.isfinite(result.loss):
                        finite = (before, step - 1)
                        cause = _nan_cause(feed, self.program.meta.batch_size, self.world_size)
                        raise every_rank(ToolError(f"{where}: the loss is {result.loss}: {cause}"))
                    losses.append(result.loss)
                    c, n = _accuracy(result.outputs, self.label_values(local))
                    correct, seen = correct + c, seen + n
                    progress.update(step, result.loss)
                    if step % self.opts["log_every"] == 0 or step == total:
                        loss, accuracy = self.metrics(losses, correct, seen)
                        acc = f" acc {accuracy:.3f}" if accuracy is not None else ""
                        progress.line(f"step {step} epoch {epoch} loss {loss:.4f}{acc}")
                        metrics.log(step, epoch, loss, accuracy, len(losses))
                        losses, correct, seen = [], 0, 0
                    every = self.opts["ckpt_every"]
                    if every and step % every == 0:
                        paused -= time.perf_counter()
                        metrics.pause()
                        self.save_step(session, step)
                        metrics.resume()
                        paused += time.perf_counter()
                if ended:
                    if trained == 0:
                        raise every_rank(
                            ToolError(
                                f"data('train') yields no full batch in epoch {epoch}"
                                + (f" after the {skip} already trained" if skip else "")
                            )
                        )
                    if length is None:
                        length = drawn
                        total = total or length * epochs
                        progress.set_total(total)
                        self._check_total(total, length)  # after epoch 0: a stop, not a refusal
                paused -= time.perf_counter()
                metrics.pause()
                self.evaluate(session, progress, epoch)
                metrics.resume()
                paused += time.perf_counter()
                if ended:
                    epoch, skip = epoch + 1, 0
        except KeyboardInterrupt as stop:
            progress.close()
            code, what = (
                (stop.code, stop.what) if isinstance(stop, Terminated) else (130, "interrupted")
            )
            if self.is_rank0:
                saved = self._save_last(session, step, start=start)
                click.echo(f"{what} at step {step}; {saved}", err=True)
            return code
        except Exception as error:
            progress.close()
            if self.is_rank0:
                state, at = finite if finite is not None else (None, step)
                error.add_note(self._save_last(session, at, state, stopped=step, start=start))
            if self.world_size > 1 and is_every_rank(error):
                self._wait_for_rank0()  # its last.pt, before the launcher stops the job
            raise
        progress.close()
        if self.is_rank0:
            with _signals_held():  # the run is done: a Ctrl-C now must not lose its end
                path = self.save(session, step, "last.pt")
            click.echo(f"wrote {path}")
            seconds = time.perf_counter() - started - paused
            if step > start and seconds > 0:
                rate = (step - start) / seconds
                samples = rate * self.program.meta.batch_size * self.world_size
                ranks = f"{self.world_size} rank{'s' if self.world_size > 1 else ''}"
                click.echo(
                    f"{step - start} steps in {seconds:.2f} s: {rate:.1f} steps/s, "
                    f"{samples:.0f} samples/s on {ranks}"
                )
        self.profile(session, self.ckpt_dir)
        return 0

    def metrics_log(self, session, start: int) -> RunMetrics:
        """The run's ``metrics.csv`` rows (``tools.metrics_log``; rank 0 writes them)."""
        from tools.metrics_log import MetricsLog, RunMetrics

        log = None
        if self.is_rank0:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            log = MetricsLog(self.ckpt_dir / "metrics.csv", start)
        step_seconds = sum(c.seconds for c in session.fabric.counters.values())
        samples = self.program.meta.batch_size * self.world_size
        return RunMetrics(log, samples, samples / step_seconds if step_seconds > 0 else math.inf)

    def save_step(self, session, step: int) -> None:
        """``step-N.pt``, written by rank 0; data-parallel, rank 0 tells every rank whether it
        was written, so that a full disk stops every rank at this step."""
        from tools.data_parallel import every_rank

        error: ToolError | None = None
        if self.is_rank0:
            try:
                self.save(session, step, f"step-{step}.pt")
            except ToolError as failed:
                error = failed
        if self.world_size > 1:
            assert self.communicator is not None
            outcome = np.asarray([error is not None], dtype=np.int64)
            what = f"the broadcast of whether rank 0 wrote step-{step}.pt"
            if self.communicator.broadcast([outcome], what)[0][0] and error is None:
                error = ToolError(f"rank 0 could not write step-{step}.pt")
        if error is not None:
            raise every_rank(error)

    def _wait_for_rank0(self) -> None:
        """Every rank waits until rank 0 is done (after a stop they all met): a rank that left
        first would make the launcher stop rank 0 while it writes ``last.pt``."""
        from runtime.distributed import DistributedError

        assert self.communicator is not None
        try:
            self.communicator.broadcast([np.zeros(1, np.int64)], "the end of a stopped job")
        except DistributedError:
            pass  # rank 0 is gone already: nothing to wait for

    def label_values(self, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        """The labels of ``feed`` in order (for the accuracy)."""
        return tuple(feed[name] for name in self.labels if name in feed)

    def _save_last(
        self,
        session,
        step: int,
        state: dict[str, np.ndarray] | None = None,
        *,
        stopped: int | None = None,
        start: int,
    ) -> str:
        """Write ``last.pt`` on a stop (further Ctrl-C and SIGTERM held off meanwhile) unless
        the state is not finite or is the one the run started from (``step == start``: no step
        trained, so nothing to keep, and a ``last.pt`` already there stays); what was done, for
        the one line that reports the stop."""
        state = session.state() if state is None else state
        prefix = f"stopped at step {stopped}; " if stopped is not None else ""
        if step == start:
            return f"{prefix}wrote no checkpoint: no step was trained"
        name = _first_non_finite(state)
        if name is not None:
            return f"{prefix}wrote no checkpoint: tensor '{name}' of the state is not finite"
        with _signals_held():
            try:
                path = self.save(session, step, "last.pt", state)
            except Exception as error:  # e.g. the disk is full
                from tools.data_parallel import last_checkpoint

                text = " ".join(str(error).split()) or type(error).__name__
                if not isinstance(error, ToolError):  # a ToolError names the file already
                    text = f"could not write {self.ckpt_dir / 'last.pt'}: {text}"
                previous = last_checkpoint({"ckpt_dir": self.ckpt_dir})
                kept = f" (the newest checkpoint there: {previous.name})" if previous else ""
                return f"{prefix}{text}{kept}"
        at = f" (step {step}, the last finite state)" if stopped not in (None, step) else ""
        return f"{prefix}wrote {path}{at}"

    def evaluate(self, session, progress, epoch: int) -> None:
        """Loss and accuracy over the test split with the forward section alone."""
        from tools.data_parallel import on_every_rank

        losses, correct, seen = [], 0, 0
        batches = iter(self.batches("test", epoch))
        while True:
            i = len(losses)
            try:
                with on_every_rank():  # the same global batch, checked whole, on every rank
                    batch = next(batches, None)
                    if batch is None:
                        break
                    feed = self.batch(*batch)
                    self.check_labels(feed, "data('test')")
                local = self.shard(feed)
                loss, outputs = session.evaluate(local)
            except Exception as error:
                error.add_note(f"evaluating test batch {i} after epoch {epoch}")
                raise
            losses.append(loss)
            c, n = _accuracy(outputs, self.label_values(local))
            correct, seen = correct + c, seen + n
        mean, accuracy = self.metrics(losses, correct, seen)
        if losses:
            acc = f" test acc {accuracy:.4f}" if accuracy is not None else ""
            progress.line(f"epoch {epoch} test loss {mean:.4f}{acc}")

    def generate(self, session, results: Path) -> int:
        """The model's ``generate(forward, args)`` hook (a language model's text from a
        prompt): ``forward(inputs)`` runs one batch of model inputs through the inference PEF
        and gives the outputs as numpy arrays; the text it returns is printed and written."""
        from runtime.machine.atomic import atomic_write_bytes

        def forward(inputs: tuple) -> tuple[np.ndarray, ...]:
            outputs = session.run(self.batch(tuple(inputs), ()))
            return tuple(outputs[f"output.{i}"] for i in range(len(outputs)))

        text = self.model_file.call("generate", forward, self.args)
        if not isinstance(text, str):
            raise ToolError(f"generate() returned a {type(text).__name__}, not a str")
        path = results / "generated.txt"
        atomic_write_bytes(path, text.encode())
        click.echo(text)
        click.echo(f"wrote {path}", err=True)
        return 0

    def inference(self) -> int:
        from runtime.session import InferenceSession

        results = self.results_dir
        check_output_dir(results, "--results-dir")
        state, _ = self.initial_state()
        self.check_finite_state(state)
        if not self.opts["init_ckpt_path"] and self.program.weights is None:
            click.echo(
                "warning: no --init-ckpt-path: running the model's initial weights", err=True
            )
        session = InferenceSession(self.program, state)
        self.record(session)
        results.mkdir(parents=True, exist_ok=True)
        if self.model_file.has("generate"):
            code = self.generate(session, results)
            self.profile(session, results)
            return code
        rows, outputs_all = [], []
        correct = seen = 0
        for inputs, targets in self.batches("test", 0):
            outputs = session.run(self.batch(inputs, targets))
            first = outputs["output.0"]
            outputs_all.append(first)
            labels = targets[0].numpy() if targets else None
            if first.ndim == 2:
                predicted = first.argmax(axis=1)
                for j, p in enumerate(predicted):
                    label = "" if labels is None else int(labels[j])
                    rows.append(f"{len(rows)},{int(p)},{label}")
            c, n = _accuracy(outputs, targets)
            correct, seen = correct + c, seen + n
        from runtime.machine.atomic import atomic_write_bytes

        atomic_write_bytes(
            results / "predictions.csv",
            ("index,prediction,label\n" + "\n".join(rows) + "\n").encode(),
        )
        np.save(
            results / "outputs.npy", np.concatenate(outputs_all) if outputs_all else np.zeros(0)
        )
        acc = f"; accuracy {correct / seen:.4f}" if seen else ""
        click.echo(f"wrote {results / 'predictions.csv'} ({len(rows)} rows){acc}")
        self.profile(session, results)
        return 0


IGNORE_INDEX = -100
"""torch's cross_entropy ``ignore_index`` default: a label that is skipped, not refused."""

_HYPER_RULES: tuple[tuple[str, Callable[[float], bool], str], ...] = (
    ("lr", lambda v: v >= 0, "a finite number >= 0"),
    ("momentum", lambda v: 0 <= v < 1, "a finite number in [0, 1)"),
    ("dampening", lambda v: 0 <= v <= 1, "a finite number in [0, 1]"),
    ("weight_decay", lambda v: v >= 0, "a finite number >= 0"),
    ("beta1", lambda v: 0 <= v < 1, "a finite number in [0, 1)"),
    ("beta2", lambda v: 0 <= v < 1, "a finite number in [0, 1)"),
    ("eps", lambda v: v >= 0, "a finite number >= 0"),
)
"""Hyperparameter, its test, the rule in words (torch's optimizers check the same); "finite"
as a float32 too, the PEF's hyperparameter inputs."""


MAX_STEPS = 2**24
"""The most steps a run counts (16,777,216): a checkpoint stores its step in the optimizer
state as torch does, a float32 (AdamW's ``step``), which holds every whole number up to 2**24
and no further; so does the bound of ``--num-steps``, ``--num-epochs`` (and the steps they
make), ``--ckpt-every`` and ``--log-every``."""

MAX_LOCAL_RANKS = 64
"""The most ranks ``--world-size`` starts on this machine (each one a process with torch)."""

MAX_DP_TIMEOUT = 10**6
"""The longest ``--dp-timeout`` in seconds (11.6 days; torch.distributed's timeout is a
``timedelta``, which ends near 10**14 s)."""


def check_options(opts: dict) -> None:
    """rdu-run's numeric options, before anything is loaded: one line naming the option."""
    steps = f"a whole number from 1 to {MAX_STEPS} (2**24, the most steps a run counts)"
    rules = (
        ("num_epochs", lambda v: 1 <= v <= MAX_STEPS, steps),
        ("num_steps", lambda v: 1 <= v <= MAX_STEPS, steps),
        ("log_every", lambda v: 1 <= v <= MAX_STEPS, steps),
        (
            "ckpt_every",
            lambda v: 0 <= v <= MAX_STEPS,
            f"a whole number from 0 (only last.pt) to {MAX_STEPS} (2**24)",
        ),
        ("seed", lambda v: 0 <= v < 2**63, "a whole number >= 0"),
        (
            "world_size",
            lambda v: 1 <= v <= MAX_LOCAL_RANKS,
            f"a whole number from 1 to {MAX_LOCAL_RANKS} (ranks started on this machine)",
        ),
        (
            "dp_timeout",
            lambda v: math.isfinite(v) and 0 < v <= MAX_DP_TIMEOUT,
            f"a number of seconds > 0 and <= {MAX_DP_TIMEOUT}",
        ),
    )
    for key, ok, rule in rules:
        value = opts.get(key)
        if value is not None and not ok(value):
            raise ToolError(f"--{key.replace('_', '-')} {value}: must be {rule}")
    for key, ok, rule in _HYPER_RULES:
        value = opts.get(key)
        if value is not None and not (_finite32(value) and ok(value)):
            if math.isfinite(value) and ok(value):
                rule += " (as the PEF's float32, at most 3.4e38)"
            raise ToolError(f"--{key.replace('_', '-')} {value}: {key} must be {rule}")


def _finite32(value: float) -> bool:
    """Finite, and still finite as the float32 the PEF takes (1e39 is not: inf)."""
    return math.isfinite(value) and abs(value) <= float(np.finfo(np.float32).max)


_TRAINING_ONLY = (
    "num_epochs", "num_steps", "lr", "momentum", "weight_decay", "ckpt_dir", "ckpt_every",
    "log_every", "reset_optimizer",
)  # fmt: skip


def check_mode_options(ctx: click.Context, opts: dict) -> None:
    """An option given on the command line that the mode would ignore is refused, not dropped:
    a training option with ``--test`` or ``--inference``, ``--results-dir`` without
    ``--inference``, ``--reset-optimizer`` without ``--init-ckpt-path``."""

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE

    mode = "--test" if opts["test_run"] else "--inference" if opts["inference"] else None
    if mode is not None:
        for name in _TRAINING_ONLY:
            if given(name) and not (name == "reset_optimizer" and mode == "--test"):
                option = f"--{name.replace('_', '-')}"
                raise ToolError(f"{option} is for training: leave it out with {mode}")
    if given("results_dir") and not opts["inference"]:
        raise ToolError("--results-dir is where --inference writes its results: add --inference")
    if opts["reset_optimizer"] and not opts["init_ckpt_path"]:
        raise ToolError(
            "--reset-optimizer starts the optimizer state of --init-ckpt-path at zero: give one"
        )


def check_output_dir(path: Path, option: str) -> None:
    """``path`` is a directory, or can be made one: refuse a file there or on the way."""
    for folder in (path, *path.parents):
        if folder.exists() or folder.is_symlink():
            if not folder.is_dir():
                what = "is" if folder == path else f"cannot be made: {folder} is"
                raise ToolError(f"{option} {path}: {what} a file, not a directory")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise ToolError(f"{option} {path}: {folder} is not writable")
            return


def _host_array(name: str, value: object) -> np.ndarray:
    """A batch tensor from ``data()`` as numpy: a torch tensor on the CPU, or a numpy array."""
    if isinstance(value, np.ndarray):
        return value
    import torch  # the model file's data() has imported it already

    if not isinstance(value, torch.Tensor):
        raise ToolError(
            f"data() gave '{name}' as a {type(value).__name__}, not a torch tensor or numpy array"
        )
    if value.device.type != "cpu":
        raise ToolError(f"data() gave '{name}' on device {value.device}; give CPU tensors")
    return value.detach().numpy()


def _first_non_finite(state: dict[str, np.ndarray]) -> str | None:
    """The first (by name) floating-point tensor of ``state`` holding NaN or inf."""
    for name in sorted(state):
        value = np.asarray(state[name])
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            return name
    return None


def _non_finite_summary(value: np.ndarray) -> str:
    """``holds 3 NaN and 1 inf of 8192 values`` (for one line)."""
    value = np.asarray(value)
    nan, inf = int(np.isnan(value).sum()), int(np.isinf(value).sum())
    parts = [f"{nan} NaN" if nan else "", f"{inf} inf" if inf else ""]
    return f"holds {' and '.join(p for p in parts if p)} of {value.size} values"


def _nan_cause(feed: dict[str, np.ndarray], rows: int, world_size: int) -> str:
    """Why a step's loss is not finite: a non-finite input (in which rank's rows of a global
    batch of ``world_size`` shards of ``rows``), or else divergence."""
    for name in sorted(feed):
        value = np.asarray(feed[name])
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            by_row = value.reshape(value.shape[0] if value.ndim else 1, -1)
            row = int(np.argmax(~np.isfinite(by_row).all(axis=1)))
            where = f" (first in row {row}{_rank_of(row, rows, world_size)})"
            kind = "input" if name.startswith("input.") else "label"
            return f"{kind} '{name}' {_non_finite_summary(value)}{where if world_size > 1 else ''}"
    return "the batch and the hyperparameters are finite: training diverged (lower --lr?)"


def _rank_of(row: int, rows: int, world_size: int) -> str:
    """``, rank 1's shard`` for row ``row`` of a global batch of ``world_size`` x ``rows``."""
    return f", rank {row // rows}'s shard" if world_size > 1 else ""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a job scheduler's stop) or SIGHUP (the terminal or the ssh session
    closed) during training: stopped like Ctrl-C, with exit status 128 + the signal's number
    (143, 129)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.code = 128 + signum
        self.what = "hung up" if signum == signal.SIGHUP else "terminated"


def _stop_signals() -> tuple[int, ...]:
    """Ctrl-C, SIGTERM, and SIGHUP unless it is ignored (``nohup``: the run outlives its
    terminal)."""
    hangup = () if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN else (signal.SIGHUP,)
    return (signal.SIGINT, signal.SIGTERM, *hangup)


def _raise_for(signum: int) -> NoReturn:
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(signum)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """While training, SIGTERM and SIGHUP raise ``Terminated`` as SIGINT raises
    KeyboardInterrupt, so
    the run stops the same way (a final ``last.pt``); the first of them makes the process
    ignore any more (a second Ctrl-C while the final checkpoint is written). Both handlers
    are restored after."""
    if not _on_main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in _stop_signals()}

    def stop(signum: int, frame: FrameType | None) -> None:
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        chained = previous[signal.Signals(signum)]
        if signum == signal.SIGINT and callable(chained):
            chained(signum, frame)  # e.g. a data-parallel rank's, which remembers it
        _raise_for(signum)

    for signum in previous:
        signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


@contextmanager
def _signals_held(*, then_raise: bool = False) -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM until the block is done; then, with ``then_raise``,
    raise KeyboardInterrupt (or Terminated) for the first one that came, else drop them (a
    second or third Ctrl-C while the final checkpoint is written)."""
    if not _on_main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: object) -> None:
        pending.append(signum)

    previous = {s: signal.signal(s, hold) for s in _stop_signals()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if handler is None:
                handler = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
            signal.signal(signum, handler)
    if pending and then_raise:
        handler = signal.getsignal(pending[0])
        if callable(handler):
            handler(pending[0], None)
        _raise_for(pending[0])


def _interrupts_between_steps():
    """Hold Ctrl-C and SIGTERM until the step in hand is done, then stop: the final checkpoint
    of a stopped run then holds whole steps (parameters, optimizer state and step count
    agree), and data-parallel ranks stop at the same step."""
    return _signals_held(then_raise=True)


def _accuracy(outputs: dict[str, np.ndarray], targets: tuple) -> tuple[int, int]:
    """Correct and seen for a classifier (2-d logits, 1-d integer labels); (0, 0) otherwise."""
    logits = outputs.get("output.0")
    if logits is None or logits.ndim != 2 or not targets:
        return 0, 0
    labels = np.asarray(targets[0])
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(logits):
        return 0, 0
    return int((logits.argmax(axis=1) == labels).sum()), len(labels)


class _progress:
    """A tqdm bar on a terminal, plain lines in a pipe."""

    def __init__(self, total: int | None, start: int, *, enabled: bool = True) -> None:
        self.bar = None
        self.enabled = enabled
        if enabled and sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)

    def update(self, step: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.4f}")

    def set_total(self, total: int) -> None:
        """The number of steps, once known (after the first epoch of ``--num-epochs``)."""
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            click.echo(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def main() -> None:
    rdu_run()


if __name__ == "__main__":
    main()
