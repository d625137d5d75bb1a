"""The fabric pictures drawn by a helper process that starts before torch loads.

``fabric-<section>.png`` (``compiler.report.draw_fabrics``) costs a GPT compile 0.4 s importing
matplotlib and 0.3 s drawing a dozen sections, all after the PEF is written, at the end of the
compile. ``rdu-compile`` forks a ``PictureWorker`` first thing, while the
process is still small (tens of MB: fork is cheap and the copy-on-write pages stay few): the
worker imports matplotlib while the compiler loads torch, then waits. Once the PEF is written,
the compiler sends the worker the PEF's path (``draw``); the worker reads the PEF and draws
every section's picture, the same ``draw_fabrics`` on the same program, so the same bytes, while
the compiler writes ``report.json``, the summary and the log; ``wait`` then returns when the
pictures are written, or raises with the worker's error in one line.

``PictureWorker.start`` returns None (the caller draws in its own process, as
``write_report`` does by default) where fork is not the Linux one or torch is already loaded
(a test calling the command in-process: forking a large process costs more than it saves).
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compiler.targets import Target
    from runtime.pef.schema import Section


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@dataclass
class PictureWorker:
    """A forked process that draws the pictures of one PEF (one request, then it exits)."""

    pid: int
    requests: int
    """Write end of the pipe the request goes down (closed once sent)."""
    replies: int
    """Read end of the pipe the worker's reply comes up."""
    sent: bool = False

    @classmethod
    def start(cls, *, always: bool = False) -> PictureWorker | None:
        """Fork the worker (None: draw in this process, see the module docstring); ``always``:
        fork even if torch is loaded (tests)."""
        if sys.platform != "linux" or ("torch" in sys.modules and not always):
            return None
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            os.close(req_w)
            os.close(rep_r)
            _serve(req_r, rep_w)
        os.close(req_r)
        os.close(rep_w)
        return cls(pid, req_w, rep_r)

    def draw(self, pef_path: Path, target: Target, out_dir: Path) -> None:
        """Ask the worker for ``out_dir/fabric-<section>.png`` of the PEF at ``pef_path``."""
        request = pickle.dumps((str(pef_path), target, str(out_dir)))
        try:
            _write_all(self.requests, request)
        except OSError:  # the worker died; wait() reports it
            pass
        os.close(self.requests)
        self.sent = True

    def wait(self) -> None:
        """Return once the pictures are written; raise with the worker's error if they are not."""
        reply = _read_all(self.replies)
        os.close(self.replies)
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        message: Any = pickle.loads(reply) if reply else None
        if message != "ok":
            code = os.waitstatus_to_exitcode(status)
            why = message or f"the picture process ended with status {code}"
            raise RuntimeError(f"drawing the fabric pictures failed: {why}")

    def close(self) -> None:
        """End the worker if ``wait`` did not (the compile failed): stop it before a request,
        or let it finish the pictures it was asked for (its own error is not reported)."""
        if not self.pid:
            return
        if self.sent:
            _read_all(self.replies)
        else:
            os.close(self.requests)
            os.kill(self.pid, signal.SIGKILL)
        os.close(self.replies)
        os.waitpid(self.pid, 0)
        self.pid = 0


def _serve(requests: int, replies: int) -> None:
    """The worker's life: import, read the one request, draw, reply, exit (never returns)."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends it quietly
        # what draw_fabric uses, loaded while the compiler loads torch
        from matplotlib import collections, figure, lines, patches  # noqa: F401
        from matplotlib.backends import backend_agg  # noqa: F401

        import compiler.report  # noqa: F401
        import runtime.pef  # noqa: F401

        request = _read_all(requests)
        if request:  # empty: the compile stopped before its PEF
            pef_path, target, out_dir = pickle.loads(request)
            _write_all(replies, pickle.dumps(_draw_all(pef_path, target, Path(out_dir))))
        code = 0
    except BaseException:  # noqa: BLE001 (the parent reports a worker without a reply)
        code = 1
    finally:
        os._exit(code)


def _draw_all(pef_path: str, target: Target, out_dir: Path) -> str:
    """Draw every section of the PEF, shared among as many processes as this one may use CPUs
    (the compiler only waits now): "ok", or the first error in one line."""
    try:
        from runtime.pef import read_pef

        sections = read_pef(pef_path).sections
    except Exception as error:
        return _one_line(error)
    n = max(1, min(len(os.sched_getaffinity(0)), len(sections), 4))
    helpers: list[tuple[int, int]] = []
    for i in range(1, n):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # a helper: draws every n-th section from the i-th, never returns
            code = 1
            try:
                os.close(read_end)
                _write_all(write_end, _draw(sections[i::n], target, out_dir).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        helpers.append((pid, read_end))
    result = _draw(sections[0::n], target, out_dir)
    for pid, read_end in helpers:
        text = _read_all(read_end).decode()
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
        if result == "ok" and text != "ok":
            code = os.waitstatus_to_exitcode(status)
            result = text or f"a picture process ended with status {code}"
    return result


def _draw(sections: list[Section], target: Target, out_dir: Path) -> str:
    """Draw ``sections``: "ok", or the error in one line."""
    from compiler.report import draw_fabrics

    try:
        draw_fabrics(sections, target, out_dir)
    except Exception as error:
        return _one_line(error)
    return "ok"


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
