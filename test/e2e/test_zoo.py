"""The zoo: architectures nobody here wrote, from ``transformers`` and ``torch.nn``,
built from small configs with the library defaults left as they are (``examples/zoo/model.py``).

Each, as a user would run it: ``rdu-compile`` for training and for inference, ``rdu-test`` on both
PEFs at its default tolerances, and three training steps with ``rdu-run`` whose losses are
finite. The commands run in this process (``in_process``: the same code, exit status and output,
without five process starts a model); as processes they are tested in ``test/hardening``. The
README's supported-models table is generated from the same list (checked here)."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path

import pytest
from e2e_helpers import ROOT, in_process, shared_compile

ZOO_FILE = ROOT / "examples" / "zoo" / "model.py"
BATCH = "2"


def _zoo():
    spec = importlib.util.spec_from_file_location("rdu_zoo", ZOO_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


ZOO = _zoo()


def _compile_inference(name: str, out: Path) -> Path:
    pef_name = f"{name}-inference"
    result = in_process(
        "rdu-compile", str(ZOO_FILE), "--zoo", name, "-b", BATCH, "--output-folder", str(out),
        "--pef-name", pef_name, "--inference",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out / pef_name / f"{pef_name}.pef"


@pytest.mark.parametrize("name", sorted(ZOO.ZOO))
def test_zoo_model_compiles_matches_torch_and_trains(
    name: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if ZOO.ZOO[name].needs_transformers:
        pytest.importorskip("transformers")
    # Shared with the tests that start from the same PEF (test_divergence's MobileNetV2).
    training = shared_compile(tmp_path_factory, ZOO_FILE, name, "--zoo", name, "-b", BATCH)
    inference = _compile_inference(name, tmp_path)
    for pef in (training, inference):
        checked = in_process("rdu-test", str(ZOO_FILE), "--zoo", name, "--pef", str(pef))
        assert checked.returncode == 0, checked.stdout + checked.stderr
    run = in_process(
        "rdu-run", str(ZOO_FILE), "--zoo", name, "--pef", str(training), "--num-steps", "3",
        "--ckpt-dir", str(tmp_path / "ckpt"),
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    losses = [float(x) for x in re.findall(r"\bloss (\S+)", run.stdout)]
    assert losses and all(math.isfinite(x) for x in losses), run.stdout
    assert (tmp_path / "ckpt" / "last.pt").exists()


def test_readme_table_is_the_zoo() -> None:
    """The README's supported-models table is ``readme_table()`` of the zoo, verbatim."""
    readme = (ROOT / "README.md").read_text()
    table = ZOO.readme_table()
    assert table in readme, (
        "README.md's zoo table is out of date; paste this between the zoo markers:\n" + table
    )
