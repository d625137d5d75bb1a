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
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import numpy as np

from tools.cli import (
    MODEL_COMMAND_SETTINGS,
    OneLineCommand,
    ToolError,
    guarded,
    model_namespace,
    print_help,
)


@click.command(cls=OneLineCommand, context_settings=MODEL_COMMAND_SETTINGS)
@click.argument("model_path", required=False, metavar="MODEL.py")
@click.option("--pef", "pef_path", help="The compiled program (from rdu-compile).")
@click.option("--test", "test_run", is_flag=True, help="A short test run on one batch.")
@click.option("--inference", is_flag=True, help="Forward only; write results.")
@click.option("--num-epochs", type=int, default=1, show_default=True)
@click.option("--num-steps", type=int, default=None, help="Stop after this many steps in all.")
@click.option(
    "--lr", type=click.FloatRange(min=0), default=None, help="Learning rate [default: the model's]."
)
@click.option(
    "--momentum",
    type=click.FloatRange(min=0),
    default=None,
    help="SGD momentum [default: the model's].",
)
@click.option(
    "--weight-decay", type=click.FloatRange(min=0), default=None, help="[default: the model's]"
)
@click.option("--ckpt-dir", default=None, help="Where to write checkpoints.")
@click.option("--ckpt-every", type=int, default=100, show_default=True, help="Steps between.")
@click.option("--init-ckpt-path", default=None, help="Start from (resume) this checkpoint.")
@click.option(
    "--results-dir", default=None, help="Inference results [default: out/<name>/results]."
)
@click.option(
    "--log-every",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Steps between lines.",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**64 - 1),  # what numpy and torch.manual_seed both take
    default=0,
    show_default=True,
    help="Init and data order seed.",
)
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
    "off-chip bytes, fraction of peak).",
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
        if opts.get("arch"):
            from runtime.pef.target_file import check_same_target

            check_same_target(meta.target, opts["arch"], opts["pef_path"])
        self.model_file = load_model_file(model_path)
        self.args = model_namespace(
            self.model_file,
            extra,
            {"batch_size": meta.batch_size, "seed": opts["seed"], "epoch": 0, "debug": debug},
        )
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
        if opts.get("data_parallel"):
            from tools.data_parallel import check_meta, join

            check_meta(meta, opts["pef_path"])
            self.communicator = join(opts.get("dp_timeout", 300.0))

    @property
    def is_rank0(self) -> bool:
        """Whether this process prints and writes files (rank 0, or not data-parallel)."""
        return self.communicator is None or self.communicator.rank == 0

    @property
    def world_size(self) -> int:
        return 1 if self.communicator is None else self.communicator.world_size

    # -- state ---------------------------------------------------------------------------

    def torch_model(self):
        import torch

        torch.manual_seed(self.opts["seed"])
        return self.model_file.call("model", self.args)

    def initial_state(self) -> tuple[dict[str, np.ndarray], int]:
        """Parameters, buffers and optimizer state for the PEF, and the step to start from.

        Non-persistent buffers (``meta.non_persistent``) are never in a checkpoint (nor in the
        model's ``state_dict``): they always come from the model, which the session checks
        against the values the PEF was compiled for."""
        from runtime.checkpoint import load_checkpoint, optimizer_from_torch

        symbols = self.program.meta.symbols
        non_persistent = {symbols[e.symbol].name for e in self.program.meta.non_persistent}
        weights = [
            s for s in symbols if s.role in ("parameter", "buffer") and s.name not in non_persistent
        ]
        if self.opts["init_ckpt_path"]:
            checkpoint = load_checkpoint(self.opts["init_ckpt_path"], expected=weights)
            state = {s.name: checkpoint["model"][s.name] for s in weights}
            if non_persistent:
                state.update(self.non_persistent_buffers(self.torch_model(), non_persistent))
            moments = [s for s in symbols if s.role == "optimizer_state"]
            if moments and checkpoint["optimizer"] is not None:
                state.update(
                    optimizer_from_torch(
                        checkpoint["optimizer"],
                        self.parameter_names(),
                        self.program.meta.optimizer,
                        expected=moments,
                    )
                )
            return state, checkpoint["step"]
        model = self.torch_model()
        initial = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
        state = {s.name: initial[s.name] for s in weights if s.name in initial}
        state.update(self.non_persistent_buffers(model, non_persistent))
        return state, 0

    @staticmethod
    def non_persistent_buffers(model, names: set[str]) -> dict[str, np.ndarray]:
        """The values of the model's buffers ``names`` (registered with ``persistent=False``)."""
        buffers = dict(model.named_buffers(remove_duplicate=False))
        return {n: buffers[n].detach().cpu().numpy().copy() for n in sorted(names) if n in buffers}

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
        import torch

        if self.model_file.has("optimizer"):
            return self.model_file.call("optimizer", model.parameters(), self.args)
        return torch.optim.SGD(model.parameters(), lr=0.01)

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
        """A host batch bound to the PEF's input and label symbols."""
        feed = {}
        for name, value in zip(self.inputs, inputs, strict=False):
            feed[name] = value.detach().numpy() if hasattr(value, "detach") else np.asarray(value)
        for name, value in zip(self.labels, targets, strict=False):
            feed[name] = value.detach().numpy() if hasattr(value, "detach") else np.asarray(value)
        if len(inputs) != len(self.inputs):
            raise ToolError(f"data() gave {len(inputs)} inputs, the PEF takes {len(self.inputs)}")
        return feed

    def batches(self, split: str, epoch: int):
        """The model's batches; data-parallel, this rank's shard of each global batch.

        A global batch is what ``data()`` yields for ``world_size x`` the PEF's batch (the
        same order on every rank: same seed and epoch); rank r takes its r-th slice of rows.
        """
        self.args.epoch = epoch
        if self.communicator is None:
            return self.model_file.batches(split, self.args)
        return self._shards(split)

    def _shards(self, split: str):
        from runtime.distributed import shard

        comm = self.communicator
        args = copy.copy(self.args)
        args.batch_size = self.args.batch_size * comm.world_size
        for inputs, targets in self.model_file.batches(split, args):
            yield (
                tuple(shard(x, comm.rank, comm.world_size) for x in inputs),
                tuple(shard(t, comm.rank, comm.world_size) for t in targets),
            )

    def metrics(self, losses: list[float], correct: int, seen: int) -> tuple[float, float | None]:
        """Mean loss and accuracy, over every rank's batches when data-parallel."""
        totals = np.array([sum(losses), len(losses), correct, seen], dtype=np.float64)
        if self.communicator is not None:
            totals = self.communicator.allreduce_sum([totals], "the all-reduce of the metrics")[0]
        loss = totals[0] / totals[1] if totals[1] else math.nan
        return loss, (totals[2] / totals[3] if totals[3] else None)

    def save(self, session, step: int, name: str) -> Path:
        """A checkpoint that loads into the torch model (tied weights under every name)."""
        from runtime.checkpoint import optimizer_to_torch, save_checkpoint

        state = session.state()
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
        ckpt_dir = Path(self.opts["ckpt_dir"] or self.out_dir / "checkpoints")
        path = ckpt_dir / name
        save_checkpoint(path, model=weights, optimizer=optimizer, step=step)
        return path

    # -- modes ---------------------------------------------------------------------------

    def test(self) -> int:
        """Configure and run every section once on one batch; check shapes and finiteness."""
        from runtime.session import InferenceSession, TrainingSession

        state, _ = self.initial_state()
        inputs, targets = next(iter(self.batches("train" if not self.is_inference else "test", 0)))
        feed = self.batch(inputs, targets)
        if self.is_inference:
            session = InferenceSession(self.program, state)
            outputs = session.run(feed)
        else:
            session = TrainingSession(self.program, state)
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
        self.profile(session)
        return 0

    def profile(self, session) -> None:
        """With ``--profile``: the per-section counters the fabric kept while it ran."""
        if not self.opts.get("profile") or not self.is_rank0:
            return
        from runtime.perf import format_report

        counters = {k: c for k, c in session.fabric.counters.items() if c.runs}
        click.echo(f"profile (target {self.program.meta.target.name}, model runtime/perf.py):")
        click.echo(format_report(counters))

    @property
    def is_inference(self) -> bool:
        return self.program.meta.inference

    def train(self) -> int:
        from runtime.session import TrainingSession

        if self.is_inference:
            raise ToolError(
                f"{self.opts['pef_path']} is an inference PEF; compile without --inference to train"
            )
        state, start = self.initial_state()
        session = TrainingSession(self.program, state, step=start, communicator=self.communicator)
        start = session.step_count  # rank 0's, when data-parallel
        session.seed = self.opts["seed"]  # dropout's random numbers
        hyper = self.hyperparameters()
        steps_per_epoch = sum(1 for _ in self.batches("train", 0))
        if steps_per_epoch == 0:
            raise ToolError("data('train') yields no full batch")
        total = self.opts["num_steps"] or steps_per_epoch * self.opts["num_epochs"]
        progress = _progress(total, start, enabled=self.is_rank0)
        step = start
        losses: list[float] = []
        correct = seen = 0
        started, paused = time.perf_counter(), 0.0  # paused: evaluating, writing checkpoints
        try:
            while step < total:
                epoch, skip = divmod(step, steps_per_epoch)
                for i, (inputs, targets) in enumerate(self.batches("train", epoch)):
                    if i < skip:
                        continue
                    if step >= total:
                        break
                    with _interrupts_between_steps():
                        result = session.step(self.batch(inputs, targets), hyper)
                        step += 1
                    losses.append(result.loss)
                    c, n = _accuracy(result.outputs, targets)
                    correct, seen = correct + c, seen + n
                    progress.update(step, result.loss)
                    if step % self.opts["log_every"] == 0 or step == total:
                        loss, accuracy = self.metrics(losses, correct, seen)
                        acc = f" acc {accuracy:.3f}" if accuracy is not None else ""
                        progress.line(f"step {step} epoch {epoch} loss {loss:.4f}{acc}")
                        losses, correct, seen = [], 0, 0
                    every = self.opts["ckpt_every"]
                    if every and step % every == 0 and self.is_rank0:
                        paused -= time.perf_counter()
                        self.save(session, step, f"step-{step}.pt")
                        paused += time.perf_counter()
                if step % steps_per_epoch == 0 or step >= total:
                    paused -= time.perf_counter()
                    self.evaluate(session, progress, epoch)
                    paused += time.perf_counter()
        except KeyboardInterrupt:
            progress.close()
            if self.is_rank0:
                path = self.save(session, step, "last.pt")
                click.echo(f"interrupted at step {step}; wrote {path}", err=True)
            return 130
        progress.close()
        if self.is_rank0:
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
        self.profile(session)
        return 0

    def evaluate(self, session, progress, epoch: int) -> None:
        """Loss and accuracy over the test split with the forward section alone."""
        losses, correct, seen = [], 0, 0
        for inputs, targets in self.batches("test", epoch):
            loss, outputs = session.evaluate(self.batch(inputs, targets))
            losses.append(loss)
            c, n = _accuracy(outputs, targets)
            correct, seen = correct + c, seen + n
        mean, accuracy = self.metrics(losses, correct, seen)
        if losses:
            acc = f" test acc {accuracy:.4f}" if accuracy is not None else ""
            progress.line(f"epoch {epoch} test loss {mean:.4f}{acc}")

    def generate(self, session, results: Path) -> int:
        """The model's ``generate(forward, args)`` hook (a language model's text from a
        prompt): ``forward(inputs)`` runs one batch of model inputs through the inference PEF
        and gives the outputs as numpy arrays; the text it returns is printed and written."""
        from runtime.atomic import atomic_write_bytes

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

        state, _ = self.initial_state()
        if not self.opts["init_ckpt_path"]:
            click.echo(
                "warning: no --init-ckpt-path: running the model's initial weights", err=True
            )
        session = InferenceSession(self.program, state)
        results = Path(self.opts["results_dir"] or self.out_dir / "results")
        results.mkdir(parents=True, exist_ok=True)
        if self.model_file.has("generate"):
            return self.generate(session, results)
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
        from runtime.atomic import atomic_write_bytes

        atomic_write_bytes(
            results / "predictions.csv",
            ("index,prediction,label\n" + "\n".join(rows) + "\n").encode(),
        )
        np.save(
            results / "outputs.npy", np.concatenate(outputs_all) if outputs_all else np.zeros(0)
        )
        acc = f"; accuracy {correct / seen:.4f}" if seen else ""
        click.echo(f"wrote {results / 'predictions.csv'} ({len(rows)} rows){acc}")
        self.profile(session)
        return 0


@contextmanager
def _interrupts_between_steps() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the step in hand is done, then raise KeyboardInterrupt: the
    final checkpoint of an interrupted run then holds whole steps (parameters, optimizer state
    and step count agree), and data-parallel ranks stop at the same step."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: object) -> None:
        pending.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(
            signal.SIGINT, previous if previous is not None else signal.default_int_handler
        )
    if pending:
        raise KeyboardInterrupt


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

    def __init__(self, total: int, start: int, *, enabled: bool = True) -> None:
        self.bar = None
        self.enabled = enabled
        if enabled and sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)

    def update(self, step: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.4f}")

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
