"""rdu-run's data-parallel side: launching the ranks, and running as one of them.

    torchrun --standalone --nproc-per-node 2 -m tools.rdu_run model.py --pef P --data-parallel
    rdu-run model.py --pef P --data-parallel --world-size 2        (the same, launched for you)

``launch`` is what ``--world-size N`` does: it checks the PEF once, then starts N ranks on this
machine with torch's own launcher (``torch.distributed.launcher.api.elastic_launch``, what
``torchrun --standalone`` runs), each rank being ``python -m tools.rdu_run`` with the same
arguments. If a rank fails, the launcher stops the others; a rank killed by a signal cannot
speak, so the launcher says which one and how, in one line, with the last checkpoint that was
written completely; a rank that exited with an error has said it in its own line.

A stop that every rank meets at the same step (``every_rank``: the data they all draw, checks of
the whole global batch, the ranks' mean loss, whether rank 0 wrote a checkpoint) is reported by
rank 0 alone, after its ``last.pt``; the other ranks wait for that and leave without a word.

``as_rank`` wraps a rank's training: a rank that loses its peers (``DistributedError``) prints
one line and leaves at once. A rank leaves with ``os._exit`` after flushing its output, done or
not: gloo's threads can abort the interpreter's teardown (SIGABRT), the more so with a peer gone.
SIGTERM (the launcher stopping the job) keeps its default action, so that it ends a rank even
while it waits inside a collective; a checkpoint being written then leaves only a temporary file
behind (checkpoints are written atomically).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from runtime.distributed import Communicator, DistributedError, TorchCommunicator, launched
from runtime.pef.schema import Meta
from tools.cli import ToolError, guarded

if TYPE_CHECKING:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError


def rank_argv(ctx: click.Context, model_path: str) -> list[str]:
    """The command line each rank runs: this one, without ``--world-size``."""
    argv = [model_path, "--data-parallel"]
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in (
            "world_size",
            "data_parallel",
            "show_help",
        ):
            continue
        value = ctx.params.get(param.name or "")
        if param.is_flag:
            if value:
                argv.append(param.opts[0])
        elif value is not None and value != param.default:
            argv += [param.opts[0], str(value)]
    return argv + list(ctx.args)


def check_pef(pef_path: str) -> None:
    """Refuse, once and before any rank starts, a PEF that cannot train data-parallel."""
    from runtime.pef import read_pef

    check_meta(read_pef(pef_path).meta, pef_path)


def check_meta(meta: Meta, pef_path: str) -> None:
    """A ``ToolError`` unless the PEF is a data-parallel training PEF."""
    if meta.inference:
        raise ToolError(f"{pef_path} is an inference PEF; data-parallel runs train")
    if not meta.data_parallel:
        raise ToolError(
            f"{pef_path} was not compiled for data-parallel training: "
            "recompile with rdu-compile --data-parallel"
        )


def launch(ctx: click.Context, model_path: str, opts: dict, debug: bool) -> int:
    """Run ``opts["world_size"]`` ranks of this command on this machine; 0 if all succeed."""
    world_size = opts["world_size"]  # in range: rdu_run.check_options
    if launched():
        raise ToolError(
            "--world-size starts the ranks itself: under torchrun, leave it out "
            "(torchrun's --nproc-per-node and --nnodes set the world size)"
        )
    check_pef(opts["pef_path"])
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if world_size > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # what torchrun does: no oversubscription
    if not debug:  # the agent's own log lines; the failure is summed up in one line below
        for name in list(logging.Logger.manager.loggerDict):
            if name.startswith("torch.distributed"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=world_size,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port, as torchrun --standalone
        max_restarts=0,
        monitor_interval=0.1,
    )
    try:
        elastic_launch(config, sys.executable)("-m", "tools.rdu_run", *rank_argv(ctx, model_path))
    except ChildFailedError as error:
        first = error.failures[_first_failure(error.failures)]
        if first.exitcode > 0:  # a rank that said what went wrong, in its own one line
            return first.exitcode
        raise ToolError(_failure_line(error, opts)) from None
    except SignalException as error:  # Ctrl-C or a kill: the agent passed it on to the ranks
        if error.sigval == signal.SIGINT:
            raise KeyboardInterrupt from None
        raise ToolError(f"stopped by {error.sigval.name}; the ranks were stopped") from None
    return 0


def _first_failure(failures: dict) -> int:
    """The rank whose failure caused the others': a rank killed by a signal (no word from it),
    else the first that exited with an error; the ranks the launcher stopped (SIGTERM) last."""

    def severity(rank: int) -> tuple[int, int]:
        code = failures[rank].exitcode
        stopped = code == -signal.SIGTERM
        return (2 if stopped else 0 if code < 0 else 1, failures[rank].timestamp)

    return min(failures, key=severity)


def _failure_line(error: ChildFailedError, opts: dict) -> str:
    """One line: which rank was killed (or stopped) and how, and the last complete checkpoint."""
    failures = error.failures
    rank = _first_failure(failures)
    failure = failures[rank]
    if failure.exitcode < 0:
        how = f"was killed by {failure.signal_name()}"
    else:
        how = f"exited with status {failure.exitcode}"
    line = f"rank {rank} (pid {failure.pid}) {how}; the other ranks were stopped"
    last = last_checkpoint(opts)
    if last is not None:
        line += f"; last complete checkpoint: {last}"
    return line


def last_checkpoint(opts: dict) -> Path | None:
    """The newest ``step-N.pt`` / ``last.pt`` in the checkpoint folder (written atomically, so
    every one there is complete)."""
    folder = opts.get("ckpt_dir") or Path(opts["pef_path"]).resolve().parent / "checkpoints"
    paths = [p for p in Path(folder).glob("*.pt") if re.fullmatch(r"step-\d+|last", p.stem)]
    return max(paths, key=lambda p: p.stat().st_mtime_ns) if paths else None


_EVERY_RANK = "rdu_every_rank"
"""The attribute that marks an error every rank meets at the same point."""


def every_rank(error: BaseException) -> BaseException:
    """Mark ``error`` as one that every rank of the job meets at the same point (raised from
    the data they all draw, a check of the whole global batch, or an outcome they agreed on:
    the ranks' mean loss, whether rank 0 wrote a checkpoint): rank 0 reports it in one line,
    the others leave with the same status without a word (``as_rank``)."""
    setattr(error, _EVERY_RANK, True)
    return error


def is_every_rank(error: BaseException) -> bool:
    return getattr(error, _EVERY_RANK, False)


@contextmanager
def on_every_rank() -> Iterator[None]:
    """Mark every error raised in the block with ``every_rank``."""
    try:
        yield
    except Exception as error:
        every_rank(error)
        raise


def join(timeout: float) -> Communicator:
    """This process's place in a data-parallel job: a torch.distributed rank if a launcher
    started it, else a job of one rank."""
    if not launched():
        return Communicator()
    return TorchCommunicator(timeout)


class _Interrupt:
    """Ctrl-C, remembered: then a peer that leaves first is no error of ours."""

    seen = False

    @classmethod
    def handler(cls, signum: int, frame: object) -> None:
        cls.seen = True
        raise KeyboardInterrupt


def as_rank(communicator: Communicator, body: Callable[[], int], debug: bool) -> int:
    """Run ``body`` as one rank of a job: an error is one line (``rdu-run: error: rank R: ...``
    for a lost peer), and a torch.distributed rank leaves through ``os._exit``."""
    signal.signal(signal.SIGINT, _Interrupt.handler)

    def train() -> int:
        try:
            return body()
        except DistributedError:
            if _Interrupt.seen:
                return 130  # Ctrl-C reached the ranks one after another
            raise
        except Exception as error:
            if communicator.rank != 0 and is_every_rank(error):
                return 1  # rank 0 says it, in one line
            raise

    try:
        guarded("rdu-run", debug, train)  # prints the one-line error; always raises SystemExit
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    except BaseException:  # --debug: guarded lets the exception through
        traceback.print_exc()
        code = 2
    if code == 0:
        communicator.close()
    if isinstance(communicator, TorchCommunicator):
        _leave(code)  # gloo's threads can abort the interpreter's teardown (SIGABRT)
    return code


def _leave(code: int) -> NoReturn:
    """Exit now, without the interpreter's teardown (files are closed; streams flushed here)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
