"""The stage dumps (compiler/stage_dumps.py): each written as the IR was when its stage ended,
though printed in a child process while the compile goes on, and a failed write reported."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from xdsl.dialects.builtin import StringAttr
from xdsl.parser import Parser

from compiler.driver import make_context
from compiler.ir_text import print_ir
from compiler.stage_dumps import StageDumps, count_ops

ROOT = Path(__file__).resolve().parents[2]


def _module():
    text = (ROOT / "test" / "passes" / "place_and_route.mlir").read_text().split("// -----")[0]
    return Parser(make_context(), text).parse_module()


def test_each_dump_is_the_ir_as_it_was_at_its_stage(tmp_path: Path) -> None:
    module = _module()
    before = print_ir(module)
    with StageDumps(tmp_path, "m") as dumps:
        dumps.write("first", module)
        module.attributes["changed"] = StringAttr("after the first dump")
        after = print_ir(module)
        dumps.write("second", module)
    assert before != after
    assert dumps.counts == {"first": count_ops(_module()), "second": count_ops(module)}
    assert (tmp_path / "m.first.mlir").read_text() == before
    assert (tmp_path / "m.second.mlir").read_text() == after
    assert not dumps.pending  # every child waited for


def test_a_stage_left_as_it_was_is_a_copy_of_the_stage_before(tmp_path: Path) -> None:
    """A stage whose pass says it did not change the IR: no child prints it again, and its
    file, made once the printed one is there, has the same text."""
    module = _module()
    with StageDumps(tmp_path, "m") as dumps:
        dumps.write("first", module)
        dumps.write("second", module, changed=False)
        dumps.write("third", module, changed=False)
        assert len(dumps.pending) == 1  # one child, printing the first
    text = print_ir(module)
    for stage in ("first", "second", "third"):
        assert (tmp_path / f"m.{stage}.mlir").read_text() == text
        assert dumps.counts[stage] == count_ops(module)
    assert not dumps.copies


def test_a_dump_that_cannot_be_written_is_an_error_naming_its_file(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    dumps = StageDumps(missing, "m")
    dumps.write("first", _module())
    with pytest.raises(OSError) as raised:
        dumps.finish()
    assert raised.value.errno == errno.ENOENT  # as rdu-compile reports a write error: one line
    assert "m.first.mlir" in raised.value.filename  # the file (or its temporary beside it)


def test_an_error_in_the_compile_is_the_one_reported(tmp_path: Path) -> None:
    dumps = StageDumps(tmp_path / "missing", "m")  # its own write fails too
    with pytest.raises(ValueError, match="the compile's own error"):
        with dumps:
            dumps.write("first", _module())
            raise ValueError("the compile's own error")
    assert not dumps.pending


def test_a_dump_that_failed_before_the_compiles_own_write_is_the_one_reported(
    tmp_path: Path,
) -> None:
    """A full disk fails a dump and then a later write of the compile (the PEF): the dump's
    error is reported, as when the dumps were printed in the process."""
    dumps = StageDumps(tmp_path / "missing", "m")
    with pytest.raises(OSError) as raised:
        with dumps:
            dumps.write("first", _module())
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "m.pef"))
    assert raised.value.errno == errno.ENOENT and "m.first.mlir" in raised.value.filename
