"""rdu-opt on bad IR and bad pipelines: one line, ``FILE:LINE:COL: error: ...`` like mlir-opt.

Most cases run ``tools.rdu_opt.main`` in this process (xdsl loads once); one runs the real
command to pin the exit status and the absence of a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hardening_helpers import one_line_error, tool

from tools.rdu_opt import main

SYNTAX = """\
builtin.module {
  %0 = arith.constant 1 : i32
  %1 = arith.addi %0 %0 : i32
}
"""

UNKNOWN_OP = """\
builtin.module {
  %0 = dataflow.bogus : tensor<f32>
}
"""

TYPE_MISMATCH = """\
builtin.module {
  %0 = arith.constant 1 : i32
  %1 = arith.addi %0, %0 : i64
}
"""

UNKNOWN_KIND = """\
builtin.module {
  dataflow.section @s sideways attributes {arg_names = [], arg_roles = [],
                                              result_names = [], result_roles = []} {
    dataflow.yield
  }
}
"""

VERIFIER = """\
builtin.module {
  dataflow.section @s forward attributes {arg_names = ["a"], arg_roles = [],
                                             result_names = [], result_roles = []} {
  ^bb0(%a: tensor<f32>):
    dataflow.yield
  }
}
"""

NESTED_VERIFIER = """\
builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4x8xf32>
  %1 = dataflow.fill 1.0 : tensor<7x5xf32>
  %2 = dataflow.matmul %0, %1 : (tensor<4x8xf32>, tensor<7x5xf32>) -> tensor<4x5xf32>
}
"""

UNTERMINATED_STRING = """\
builtin.module {
  dataflow.section @s "forward attributes {arg_names = [], arg_roles = [], result_names = []} {
  }
}
"""

VALID = """\
builtin.module {
  %0 = dataflow.fill 1.0 : tensor<4x8xf32>
}
"""


def run_opt(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``rdu-opt argv`` in this process: (exit status, stdout, stderr)."""
    try:
        main(list(argv))
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = run_opt(capsys, *argv)
    assert code == 1, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    ("source", "line", "col", "message"),
    [
        (SYNTAX, 3, 22, "Expected ','"),
        (UNKNOWN_OP, 2, 23, "Operation dataflow.bogus is not registered"),
        (TYPE_MISMATCH, 3, 19, "used with type i64, but has been previously used or defined"),
        (UNKNOWN_KIND, 2, 23, "unknown section kind 'sideways' (expected one of forward, backward"),
        (VERIFIER, 2, 3, "section @s: 1 block arguments but 1 arg_names and 0 arg_roles"),
        (NESTED_VERIFIER, 4, 3, "matmul contraction dims differ"),
        (UNTERMINATED_STRING, 2, 23, "closing string literal"),
    ],
    ids=[
        "syntax", "unknown-op", "type-mismatch", "unknown-kind", "verifier", "nested-verifier",
        "unterminated",
    ],
)  # fmt: skip
def test_bad_ir_is_one_located_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    source: str,
    line: int,
    col: int,
    message: str,
) -> None:
    path = tmp_path / "bad.mlir"
    path.write_text(source)
    error = refused(capsys, str(path))
    assert error.startswith(f"{path}:{line}:{col}: error: "), error
    assert message in error


def test_positions_count_lines_across_split_input_chunks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "chunks.mlir"
    path.write_text(VALID + "\n// -----\n\n" + NESTED_VERIFIER)
    first_line = len(VALID.splitlines()) + 3 + 1  # the chunk's "builtin.module {" line
    error = refused(capsys, str(path), "--split-input-file")
    assert error.startswith(f"{path}:{first_line + 3}:3: error: matmul contraction"), error


def test_verify_diagnostics_still_prints_and_succeeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.mlir"
    path.write_text(VERIFIER)
    code, out, _ = run_opt(capsys, str(path), "--verify-diagnostics")
    assert code == 0 and "1 block arguments but 1 arg_names" in out


@pytest.mark.parametrize(
    ("pipeline", "expected"),
    [
        ("no-such-pass", "rdu-opt: error: unknown pass 'no-such-pass'"),
        ("place-and-rout", "unknown pass 'place-and-rout' (did you mean 'place-and-route'?)"),
        ("place-and-route{bogus=1}", "pass 'place-and-route' has no option 'bogus' (options:"),
        ("partition-sections{seed=abc}", "rdu-opt: error: pass 'partition-sections': "),
        ("place-and-route{seed=1", "rdu-opt: error: bad pass pipeline 'place-and-route{seed=1'"),
        ("place-and-route{target=nope}", "error: place-and-route: unknown target 'nope'"),
        ("convert-dataflow-to-rdu-tile{target=nope}", "rdu-tile: unknown target 'nope'"),
    ],
    ids=["unknown", "misspelt", "unknown-option", "option-type", "malformed", "target", "target2"],
)  # fmt: skip
def test_bad_pipeline_names_the_pass_or_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pipeline: str, expected: str
) -> None:
    path = tmp_path / "ok.mlir"
    path.write_text(VALID)
    assert expected in refused(capsys, str(path), "-p", pipeline)


def test_unreadable_input_and_unknown_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.mlir"
    error = refused(capsys, str(missing))
    assert error == f"rdu-opt: error: cannot read '{missing}': No such file or directory"
    path = tmp_path / "ok.mlir"
    path.write_text(VALID)
    assert "--frobnicate" in refused(capsys, str(path), "--frobnicate")


def test_not_utf8_is_located(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "binary.mlir"
    path.write_bytes(b"builtin.module {\n  \xff\xfe\n}\n")
    assert refused(capsys, str(path)) == f"{path}:2:3: error: invalid UTF-8 byte 0xff"


def test_the_command_exits_1_without_traceback_and_debug_shows_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.mlir"
    path.write_text(UNKNOWN_OP)
    error = one_line_error(tool("rdu-opt", str(path)))
    assert error == f"{path}:2:23: error: Operation dataflow.bogus is not registered"
    debug = tool("rdu-opt", str(path), "--debug")
    assert debug.returncode != 0 and "Traceback" in debug.stderr
