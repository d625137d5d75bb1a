"""Work done beside the compile, in a child process forked for it.

A compile runs on one core and the machine has more. Work whose result is plain data and
depends only on what is there when it starts (the model, the IR as it is then) can run in a
child process forked at that point, which sees the parent's memory as it was (copy-on-write)
while the parent goes on: ``Beside(work)`` forks the child, which runs ``work()``, sends its
result back pickled and exits; ``result()`` waits for it. Where there is no ``os.fork``, or
the child failed (raised, or was killed), ``result()`` runs ``work()`` in this process, which
gives the same result or raises the error there, as a compile on one core would: so ``work``
must read only what the parent leaves as it was until ``result()`` (or restores).

A child runs torch, if it is loaded, on one thread: an OpenMP runtime's worker threads are not
there after a fork (its first parallel region would wait for them), and the parent uses the
other cores anyway. It collects no garbage: a collection would walk, and so copy page by page,
the heap it shares with the parent. A child is worth seconds of work, not tenths: it costs
its fork, and slows both processes' writes, page by page, for as long as it lives.
"""

from __future__ import annotations

import gc
import os
import pickle
import select
import signal
import sys
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")


class Beside(Generic[T]):
    """``work()`` in a child process forked now; ``result()`` is its result (see the module
    docstring). ``fork=False`` forks nothing: ``result()`` runs ``work()`` then. Use it as a
    context manager, or call ``close``, so that no child is left behind after an error."""

    def __init__(self, work: Callable[[], T], fork: bool = True) -> None:
        self.work = work
        self.child: tuple[int, int] | None = None
        """The child's pid and the read end of the pipe its result comes on."""
        if fork and hasattr(os, "fork"):
            self.child = _fork(work)

    def result(self) -> T:
        """The child's result, or ``work()`` run here when there is no child or it failed."""
        if self.child is None:
            return self.work()
        pid, read_end = self.child
        self.child = None
        with os.fdopen(read_end, "rb") as pipe:
            sent = pipe.read()
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0 or not sent:
            return self.work()
        return pickle.loads(sent)

    def close(self) -> None:
        """End the child if ``result`` was not asked for (after an error: its result is not
        wanted, and no child is left behind)."""
        if self.child is not None:
            pid, read_end = self.child
            self.child = None
            os.close(read_end)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)

    def __enter__(self) -> Beside[T]:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def first_done(besides: Sequence[Beside[T]]) -> int:
    """The position in ``besides`` of one whose ``result()`` will not wait: one without a child
    (its work runs then), else the first whose child has sent its result or ended (waiting for
    one to)."""
    waiting = {}
    for k, beside in enumerate(besides):
        if beside.child is None:
            return k
        waiting[beside.child[1]] = k
    ready, _, _ = select.select(list(waiting), [], [])
    return min(waiting[fd] for fd in ready)


def _fork(work: Callable[[], object]) -> tuple[int, int]:
    """A child process running ``work``: its pid and the pipe its pickled result comes on."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: work, send, exit
        gc.disable()
        os.close(read_end)
        status = 1
        try:
            torch = sys.modules.get("torch")
            if torch is not None:
                torch.set_num_threads(1)
            sent = pickle.dumps(work(), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(sent)
            status = 0
        finally:
            os._exit(status)  # no atexit functions, no flushing of the parent's buffers
    os.close(write_end)
    return pid, read_end
