"""Data-parallel training: the ranks of a job and the collectives they run between sections.

Every rank runs the same PEF on its own shard of each batch. A data-parallel PEF lists its
collectives in ``meta.collectives`` (see ``runtime.pef.schema.Collective``); the training
session runs them through a ``Communicator`` just before the section each one names: the
gradients are averaged across ranks between the backward and the optimizer sections, and
buffers a section updates are broadcast from rank 0.

``TorchCommunicator`` is the one implementation: torch.distributed with the gloo backend, set up
from the environment that torch's launcher (``torchrun``, or ``rdu-run --world-size N``) gives
each rank (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``). torch is used for the
collective alone: the arrays of one dtype are packed into one contiguous numpy buffer, shared
with a torch tensor without a copy (``torch.from_numpy``), reduced in place and unpacked. So a
step costs one all-reduce, whatever the number of gradients.

A rank that dies closes its sockets and the others' next collective fails at once; a rank that
hangs makes them fail after ``timeout`` seconds. Either way the failure is a
``DistributedError`` naming the rank and the collective. torch is imported lazily, only here.
"""

from __future__ import annotations

import datetime
import os
import re
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from runtime.errors import RduError
from runtime.machine.trace import RunRecorder

LAUNCH_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RduError):
    """A data-parallel job that cannot start or lost a rank: one line naming the rank and what."""


class Communicator:
    """The ranks of a job as a session sees them. This base class is a job of one rank."""

    rank: int = 0
    world_size: int = 1

    def allreduce_mean(self, arrays: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
        """Each array averaged over the ranks (same shapes and dtypes on every rank)."""
        return [np.array(a, copy=True) for a in arrays]

    def allreduce_sum(self, arrays: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
        """Each array summed over the ranks (metrics: losses, counts)."""
        return [np.array(a, copy=True) for a in arrays]

    def broadcast(self, arrays: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
        """Rank 0's arrays, on every rank."""
        return [np.array(a, copy=True) for a in arrays]

    def close(self) -> None:
        """Leave the job (after the last collective)."""


def launched() -> bool:
    """Whether this process was started by torch's launcher as a rank of a job."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


class TorchCommunicator(Communicator):
    """torch.distributed, gloo backend, joined through the launcher's environment."""

    def __init__(self, timeout: float) -> None:
        missing = [name for name in LAUNCH_ENV if name not in os.environ]
        if missing:
            raise DistributedError(
                f"not started as a rank of a data-parallel job ({', '.join(missing)} unset): "
                "launch with torchrun or rdu-run --world-size N"
            )
        try:
            self.rank = int(os.environ["RANK"])
            self.world_size = int(os.environ["WORLD_SIZE"])
        except ValueError:
            raise DistributedError(
                f"RANK={os.environ['RANK']!r}, WORLD_SIZE={os.environ['WORLD_SIZE']!r} "
                "are not numbers"
            ) from None
        self.timeout = timeout
        self._dist = _dist()
        where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
        try:
            if not self._dist.is_initialized():
                self._dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout))
        except Exception as error:
            raise DistributedError(
                f"rank {self.rank}: could not join the {self.world_size}-rank job at {where}: "
                f"{brief(error)}"
            ) from None

    def _run(self, arrays: Sequence[np.ndarray], what: str, op: str) -> list[np.ndarray]:
        torch = _torch()
        out = [np.array(a, copy=True) for a in arrays]
        by_dtype: dict[np.dtype, list[int]] = {}
        for i, array in enumerate(out):
            by_dtype.setdefault(array.dtype, []).append(i)
        for dtype, indices in by_dtype.items():
            flat = np.concatenate([out[i].ravel() for i in indices]).astype(dtype, copy=False)
            tensor = torch.from_numpy(flat)
            try:
                if op == "broadcast":
                    self._dist.broadcast(tensor, src=0)
                else:
                    self._dist.all_reduce(tensor, op=self._dist.ReduceOp.SUM)
            except Exception as error:
                raise DistributedError(
                    f"rank {self.rank}: {what} failed: {brief(error)} (another rank died, or "
                    f"hung for more than {self.timeout:g} s)"
                ) from None
            if op == "mean":
                flat /= self.world_size
            start = 0
            for i in indices:
                size = out[i].size
                out[i] = flat[start : start + size].reshape(out[i].shape)
                start += size
        return out

    def allreduce_mean(self, arrays: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
        return self._run(arrays, what, "mean")

    def allreduce_sum(self, arrays: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
        return self._run(arrays, what, "sum")

    def broadcast(self, arrays: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
        return self._run(arrays, what, "broadcast")

    def close(self) -> None:
        if self._dist.is_initialized():
            self._dist.destroy_process_group()


def shard(array: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s rows of a global batch: the ``rank``-th of ``world_size`` equal slices."""
    rows = len(array) // world_size
    return array[rank * rows : (rank + 1) * rows]


def brief(error: BaseException) -> str:
    """The gist of a torch.distributed / gloo error: its first sentence, no source location."""
    text = " ".join(str(error).split())
    text = re.sub(r"^\[[^\]]*\.(?:cc|cpp|h|py):\d+\]\s*", "", text)
    first = re.split(r"(?<=[a-z0-9)])\.\s", text, maxsplit=1)[0]
    return first.rstrip(".") or type(error).__name__


def _torch() -> Any:
    import torch

    return torch


def _dist() -> Any:
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        raise DistributedError("this torch build has no torch.distributed gloo backend")
    return dist


class TimedCommunicator(Communicator):
    """A communicator that records in ``recorder`` how long each collective of ``inner`` took
    (``rdu-run --profile``'s timeline)."""

    def __init__(self, inner: Communicator, recorder: RunRecorder) -> None:
        self.inner = inner
        self.recorder = recorder
        self.rank = inner.rank
        self.world_size = inner.world_size

    def _timed(self, op: str, arrays: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
        start = time.perf_counter()
        try:
            return getattr(self.inner, op)(arrays, what)
        finally:
            self.recorder.collective_ran(what, op, start, time.perf_counter() - start)

    def allreduce_mean(self, arrays: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
        return self._timed("allreduce_mean", arrays, what)

    def allreduce_sum(self, arrays: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
        return self._timed("allreduce_sum", arrays, what)

    def broadcast(self, arrays: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
        return self._timed("broadcast", arrays, what)

    def close(self) -> None:
        self.inner.close()
