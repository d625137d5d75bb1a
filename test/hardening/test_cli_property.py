"""Property (hypothesis, derandomized, a bounded number of examples): whatever values rdu-compile's
numeric and path options (and the MLP's own ``--hidden``, ``--classes``, and a target file's
fields) are given, it ends in 0, or 1 with one line on stderr: never 2 (an internal error) or a
traceback.

Each example runs the command in this process (click's runner: the same code, exit status and
output as the console script, without importing torch again); the garbage-collector tuning of a
compile (``_collect_again``) is left out so that it does not outlive the example. The values are
mostly out of range, which fails in milliseconds; the few valid ones compile the MLP (about a
second each). ``test_cli_errors.py`` runs the same errors as real processes.
"""

from __future__ import annotations

import os
import shutil
import string
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hardening_helpers import MLP
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PROPERTY = settings(
    max_examples=int(os.environ.get("RDU_PROPERTY_EXAMPLES", "60")),  # more for a longer search
    derandomize=not os.environ.get("RDU_PROPERTY_EXAMPLES"),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

wild_numbers = st.one_of(
    st.integers(-3, 0),
    st.sampled_from([2**31, 2**63, 2**64, -(2**63) - 1, 10**30]),
)
"""Just out of range, and the edges of the integer types."""

wild_names = st.one_of(
    st.sampled_from(["", ".", "..", "a/b", "/abs", "x" * 300, "a\0b", " ", "-b", "a-file"]),
    st.text(string.ascii_letters + string.digits + "-_./ \t\u00e9", min_size=0, max_size=12),
)

TARGET_INTS = ("pcu_lanes", "pcu_stages", "pmu_bytes", "pmu_banks", "link_capacity")


def target_values(wild: bool) -> st.SearchStrategy[dict[str, object]]:
    """A target file's fields: a small valid fabric, or (``wild``) with fields out of range or of
    a wrong type."""
    odd = st.one_of(
        st.integers(-2, 0),
        st.sampled_from([10**20, 2**63, 1025, 1.5, True, "8", float("nan"), float("inf")]),
    )

    def field(valid: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
        return st.one_of(valid, odd) if wild else valid

    return st.fixed_dictionaries(
        {
            "cols": field(st.integers(2, 10)),
            "rows": field(st.integers(2, 10)),
            **{f: field(st.sampled_from([4, 16])) for f in TARGET_INTS[:2]},
            "pmu_bytes": field(st.sampled_from([16 * 1024, 2**18])),
            **{f: field(st.sampled_from([2, 4, 16])) for f in TARGET_INTS[3:]},
            "clock_ghz": field(st.just(1.0)),
            "dram_gbps": field(st.just(51.2)),
            "stream_bytes_per_cycle": field(st.just(64)),
        }
    )


def toml(values: dict[str, object]) -> str:
    def text(value: object) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, str):
            return f'"{value}"'
        if isinstance(value, float) and value != value:
            return "nan"
        if value == float("inf"):
            return "inf"
        return repr(value)

    return "".join(f"{key} = {text(value)}\n" for key, value in values.items())


OPTIONS: dict[str, tuple[st.SearchStrategy[object], st.SearchStrategy[object]]] = {
    # option: (valid values, wild values)
    "-b": (st.integers(1, 8), wild_numbers),
    "--seed": (st.integers(0, 2**32), wild_numbers),
    "--hidden": (st.integers(1, 16), wild_numbers),
    "--classes": (st.integers(2, 10), wild_numbers),
    "--pef-name": (st.sampled_from(["p", "mlp-1", "\u00e9t\u00e9"]), wild_names),
    "--output-folder": (
        st.sampled_from(["out", "folder", "new/deeper"]),
        st.one_of(st.sampled_from(["a-file", "a-file/out"]), wild_names),
    ),
    "--arch": (
        st.one_of(st.sampled_from(["tiny", "plasticine"]), target_values(wild=False)),
        st.one_of(
            st.sampled_from(["nope", "", "missing.toml", "a-file", "folder", "folder/"]),
            target_values(wild=True),
        ),
    ),
}
"""Every numeric and path option of rdu-compile, and the MLP's own."""


@pytest.fixture(scope="module")
def no_gc_tuning() -> object:
    """``_collect_again`` off for the module (it freezes the objects of this process)."""
    import tools.rdu_compile as rdu_compile

    saved = rdu_compile._collect_again
    rdu_compile._collect_again = lambda: None
    yield None
    rdu_compile._collect_again = saved


@PROPERTY
@given(
    wild=st.sets(st.sampled_from(list(OPTIONS)), max_size=2),
    data=st.data(),
    check=st.booleans(),
    inference=st.booleans(),
)
def test_rdu_compile_never_fails_internally(
    tmp_path_factory: pytest.TempPathFactory,
    no_gc_tuning: object,
    wild: set[str],
    data: st.DataObject,
    check: bool,
    inference: bool,
) -> None:
    """Every option valid but up to two (``wild``), which get values out of range or odd."""
    from tools.rdu_compile import rdu_compile

    root = tmp_path_factory.mktemp("property")
    (root / "a-file").write_text("")
    (root / "folder").mkdir()
    args = [str(MLP)]
    for option, (valid, odd) in OPTIONS.items():
        value = data.draw(odd if option in wild else valid, label=option)
        if isinstance(value, dict):
            (root / "target.toml").write_text(toml(value))
            value = "target.toml"
        args += [option, str(value)]
    args += ["--check"] if check else []
    args += ["--inference"] if inference else []
    here = os.getcwd()
    os.chdir(root)  # relative paths land in this example's folder
    try:
        result = CliRunner().invoke(rdu_compile, args)
    finally:
        os.chdir(here)
        shutil.rmtree(root, ignore_errors=True)
    check_outcome("rdu-compile", args, result)


RUN_OPTIONS: dict[str, tuple[st.SearchStrategy[object], st.SearchStrategy[object]]] = {
    # option: (valid values, wild values); --num-steps stays small so that a run is short (it
    # overrides --num-epochs)
    "--num-steps": (st.integers(1, 3), st.one_of(st.integers(-3, 0), wild_numbers)),
    "--num-epochs": (st.integers(1, 2), wild_numbers),
    "--lr": (
        st.sampled_from([0.0, 0.01, 1.0]),
        st.sampled_from(["-1", "nan", "inf", "1e999", "1e39", "x"]),
    ),
    "--momentum": (st.sampled_from([0.0, 0.9]), st.sampled_from(["-1", "nan", "2", "x"])),
    "--weight-decay": (
        st.sampled_from([0.0, 1e-4]),
        st.sampled_from(["-1", "nan", "inf", "1e39"]),
    ),
    "--dp-timeout": (st.sampled_from([1.0, 300.0]), st.sampled_from(["0", "-1", "nan", "1e300"])),
    "--ckpt-every": (st.integers(1, 3), wild_numbers),
    "--log-every": (st.integers(1, 3), wild_numbers),
    "--seed": (st.integers(0, 2**32), wild_numbers),
    "--ckpt-dir": (
        st.sampled_from(["ckpt", "folder", "new/deeper"]),
        st.sampled_from(["a-file", "a-file/ck", "."]),
    ),
}
"""rdu-run's numeric options for training (and a checkpoint folder)."""


@PROPERTY
@given(wild=st.sets(st.sampled_from(list(RUN_OPTIONS)), max_size=1), data=st.data())
def test_rdu_run_never_fails_internally(
    tmp_path_factory: pytest.TempPathFactory, mlp_pef: Path, wild: set[str], data: st.DataObject
) -> None:
    """A few training steps of the MLP with every option valid but one."""
    from tools.rdu_run import rdu_run

    root = tmp_path_factory.mktemp("property-run")
    (root / "a-file").write_text("")
    (root / "folder").mkdir()
    args = [str(MLP), "--pef", str(mlp_pef)]
    for option, (valid, odd) in RUN_OPTIONS.items():
        args += [option, str(data.draw(odd if option in wild else valid, label=option))]
    here = os.getcwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(rdu_run, args)
    finally:
        os.chdir(here)
        shutil.rmtree(root, ignore_errors=True)
    check_outcome("rdu-run", args, result)


def check_outcome(tool: str, args: list[str], result: Result) -> None:
    """Exit 0, or 1 with one line on stderr; never an escaped exception, exit 2 or a traceback."""
    where = f"{tool} {' '.join(repr(a) for a in args)}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        where,
        result.exception,
    )
    assert result.exit_code in (0, 1), (where, result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr, (where, result.stderr)
    if result.exit_code == 1:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{tool}: error: "), (where, lines)
