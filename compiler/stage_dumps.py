"""The IR after each stage of a compile, written next to the PEF (``<name>.<stage>.mlir``).

Printing a stage's IR takes a tenth of a GPT-2 small compile (its 10 dumps: 2.3 s of 23 s of
CPU) and the next stage does not need the text, so on a system with ``os.fork`` each dump is
printed by a child process forked at that point: the child has the module as it was when it
was forked (copy-on-write), prints it (``ir_text.print_ir``), writes the file atomically and
exits, while the compile goes on in the parent; ``finish`` waits for every child and raises
the first error one of them met. The text is the same as printing in the process; on a system
without ``fork`` it is printed there. The child also counts the stage's ops for the log
(``count_ops``: 0.35 s of walks over GPT-2 small's stages, off the compile's path), sent back
with its status.

A stage whose pass says it left the IR as it was (``compiler.pipeline.TellsChange``) is not
printed again: its file is a copy of the stage before's, made by ``finish`` (GPT-2 small on
sn40l: resident and pinned, 3.3 MB each, were printed at the end of the compile, beside the
PEF, and waited for).
"""

from __future__ import annotations

import gc
import json
import os
from collections import Counter
from pathlib import Path
from types import TracebackType

from xdsl.dialects.builtin import ModuleOp

from compiler.ir_text import AttributeTexts, print_ir
from runtime.machine.atomic import atomic_write_bytes


class StageDumps:
    """Writes ``out_dir/<pef_name>.<stage>.mlir`` for each stage ``write`` is given."""

    def __init__(self, out_dir: Path, pef_name: str) -> None:
        self.out_dir = out_dir
        self.pef_name = pef_name
        self.texts = AttributeTexts()
        """Attribute texts shared by the dumps printed in this process (no ``fork``)."""
        self.pending: list[tuple[int, int, str, Path]] = []
        """Per child still to wait for: its pid, the pipe its counts or its error come back on,
        its stage and its file."""
        self.printed: str | None = None
        """The stage of the last dump printed."""
        self.copies: list[tuple[str, str, Path]] = []
        """(a printed dump's stage, a later stage and its file, a copy), made by ``finish``."""
        self.counts: dict[str, dict[str, int]] = {}
        """Each stage's ops by dialect (``count_ops``, for the log), counted where its dump is
        printed: known once ``finish`` returns."""

    def write(self, stage: str, module: ModuleOp, changed: bool = True) -> None:
        """Write ``module``'s text as ``stage``'s dump (in a child process where there is
        ``os.fork``: the file exists once ``finish`` returns). ``changed=False``: the IR is
        as the last stage written left it (its pass says so), and the file is a copy of
        that stage's."""
        path = self.out_dir / f"{self.pef_name}.{stage}.mlir"
        if not changed and self.printed is not None:
            self.copies.append((self.printed, stage, path))
            return
        self.printed = stage
        if not hasattr(os, "fork"):
            self.counts[stage] = count_ops(module)
            atomic_write_bytes(path, print_ir(module, self.texts).encode())
            return
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: print, write, report an error down the pipe, exit
            # No collection of cycles in a process that lives for one print: it would walk (and
            # so copy, page by page) the whole heap it shares with the parent. Least priority:
            # the compile, and the children it waits for (compiler.forked), go first; a dump is
            # waited for only at the end.
            gc.disable()
            os.nice(19)
            os.close(read_end)
            status = 1
            try:
                counts = count_ops(module)
                atomic_write_bytes(path, print_ir(module, self.texts).encode())
                os.write(write_end, json.dumps({"counts": counts}).encode())
                status = 0
            except BaseException as error:  # noqa: BLE001 - every error goes to the parent
                os.write(write_end, json.dumps(_describe(error)).encode())
            finally:
                os._exit(status)  # no atexit functions, no flushing of the parent's buffers
        os.close(write_end)
        self.pending.append((pid, read_end, stage, path))

    def __enter__(self) -> StageDumps:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """``finish``. After an error in the compile, its error is the one to report, unless
        both it and a dump met an ``OSError`` (a full disk): the dump's came first, as it would
        have printed in the process."""
        if error is None:
            self.finish()
            return
        try:
            self.finish()
        except OSError as first:
            if isinstance(error, OSError):
                raise first from error

    def finish(self) -> None:
        """Wait for every dump written in a child, then make the copies; raise the ``OSError``
        the first child that failed met (its errno, its reason and the file: a full disk is
        reported as in the process), or an ``OSError`` naming the file for any other failure."""
        failed: OSError | None = None
        for pid, read_end, stage, path in self.pending:
            with os.fdopen(read_end, "rb") as pipe:
                sent = pipe.read()
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) == 0:
                self.counts[stage] = json.loads(sent)["counts"]
                continue
            if failed is not None:
                continue
            error = json.loads(sent) if sent else {"message": "the process writing it died"}
            if error.get("errno") is not None:
                failed = OSError(error["errno"], error["strerror"], error["filename"] or str(path))
            else:
                failed = OSError(f"could not write the IR dump {path}: {error['message']}")
        self.pending.clear()
        if failed is not None:
            raise failed
        for printed, stage, path in self.copies:
            source = self.out_dir / f"{self.pef_name}.{printed}.mlir"
            atomic_write_bytes(path, source.read_bytes())
            self.counts[stage] = self.counts[printed]
        self.copies.clear()


def count_ops(module: ModuleOp) -> dict[str, int]:
    """``module``'s ops by dialect, the dialects in order."""
    counts: Counter[str] = Counter()
    for op in module.walk():
        counts[op.name.split(".")[0]] += 1
    return dict(sorted(counts.items()))


def _describe(error: BaseException) -> dict[str, object]:
    """What the parent needs of a child's error to raise it again (``finish``)."""
    text = " ".join(str(error).split()) or type(error).__name__
    described: dict[str, object] = {"message": f"{type(error).__name__}: {text}"}
    if isinstance(error, OSError):
        filename = error.filename if isinstance(error.filename, str) else None
        described.update(errno=error.errno, strerror=error.strerror, filename=filename)
    return described
