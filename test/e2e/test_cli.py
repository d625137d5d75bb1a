"""The commands' shared behaviour: help with the model's arguments, one-line errors."""

from __future__ import annotations

from e2e_helpers import MLP, tool


def test_compile_help_lists_model_arguments() -> None:
    result = tool("rdu-compile", str(MLP), "--help")
    assert result.returncode == 0
    assert "--inference" in result.stdout and "--hidden" in result.stdout


def test_debug_help_shows_experimental_options() -> None:
    plain = tool("rdu-compile", "--help").stdout
    debug = tool("rdu-compile", "--debug", "--help").stdout
    assert len(debug.splitlines()) >= len(plain.splitlines())


def test_bad_model_argument_is_one_line() -> None:
    result = tool("rdu-compile", str(MLP), "--hidden", "wide")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "--hidden" in result.stderr
    assert result.stdout == ""


def test_missing_model_file_is_one_line() -> None:
    result = tool("rdu-run", "no/such/model.py", "--pef", "x.pef")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_rdu_compile_exits_without_teardown_as_python_would() -> None:
    """rdu-compile's quick exit (``_exit_now``): the atexit functions run, buffered output is
    written, and the status is what ``sys.exit`` would give."""
    import subprocess
    import sys

    script = (
        "import atexit, sys\n"
        "from tools.rdu_compile import _exit_now\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "print('buffered', end=' ')\n"
        "_exit_now(sys.argv[1] if sys.argv[1] == 'why' else int(sys.argv[1]))\n"
    )
    for code, status, stderr in (("3", 3, ""), ("0", 0, ""), ("why", 1, "why\n")):
        result = subprocess.run(
            [sys.executable, "-c", script, code], capture_output=True, text=True, timeout=60
        )
        assert (result.returncode, result.stdout, result.stderr) == (
            status, "buffered atexit ran\n", stderr
        )  # fmt: skip
