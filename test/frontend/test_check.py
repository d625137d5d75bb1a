"""``rdu-compile --check`` (every refused op at once) and the two frames every unsupported-op
error names: the user's line and the library line that called the op."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

ROOT = Path(__file__).resolve().parents[2]
MLP_FILE = ROOT / "examples" / "mlp" / "model.py"

# A "library" beside the model: the model imports it as a user imports transformers. Three ops
# nobody converts (the Bessel function i0 in the model file itself, lgamma and another Bessel
# function in the library, the latter inside a no_grad block, which export keeps as a subgraph)
# and a form a converter refuses (embedding's gradient scaled by frequency: in the backward only).
LIBRARY = """\
import torch
from torch import nn


class Mixer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            scale = torch.special.bessel_j0(x.mean(0))  # BESSEL
        return torch.lgamma(self.fc(x).abs() + 1) * scale  # LGAMMA
"""

MODEL = """\
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from check_library import Mixer  # noqa: E402


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mix = Mixer()
        self.emb = nn.Embedding(8, 8, scale_grad_by_freq=True)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        h = torch.i0(x)  # I0
        return self.mix(h) + self.emb(tokens)  # MIX


def model(args):
    return Net()


def example_inputs(args):
    return (torch.randn(args.batch_size, 8), torch.arange(args.batch_size) % 8)


def example_targets(args):
    return (torch.randn(args.batch_size, 8),)


def loss(out, target):
    return ((out - target) ** 2).mean()
"""


def _line(text: str, marker: str) -> int:
    return next(i for i, t in enumerate(text.splitlines(), start=1) if t.endswith(f"# {marker}"))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("check")
    (folder / "check_library.py").write_text(LIBRARY)
    path = folder / "model.py"
    path.write_text(MODEL)
    return path


def _check(*args: str) -> Result:
    """``rdu-compile --check ...`` in this process (it traces and converts, lowers nothing)."""
    from tools.rdu_compile import rdu_compile

    return CliRunner().invoke(rdu_compile, ["--check", *args])


I0, MIX = _line(MODEL, "I0"), _line(MODEL, "MIX")
BESSEL, LGAMMA = _line(LIBRARY, "BESSEL"), _line(LIBRARY, "LGAMMA")


def test_check_lists_every_refused_op_with_both_frames(model_file: Path) -> None:
    result = _check(str(model_file))
    assert result.exit_code == 1, result.output
    out = result.stdout.splitlines()
    assert out[0].startswith("model.py (training): ") and "ops not supported" in out[0], out
    groups: dict[str, list[str]] = {}
    op = ""
    for line in out[1:]:
        if line.startswith("  "):
            groups[op].append(line.strip())
        else:
            op, count = line.split(": ")
            groups[op] = []
            assert count == "1 call", line
    assert groups["aten.i0.default"] == [f"model.py:{I0}"]  # the user's line calls it
    assert groups["aten.lgamma.default"] == [
        f"model.py:{MIX} -> check_library.py:{LGAMMA} in Mixer.forward"
    ]
    assert groups["aten.special_bessel_j0.default"] == [
        f"model.py:{MIX} -> check_library.py:{BESSEL} in Mixer.forward"
    ]
    # lgamma's gradient, and a converter's refusal of a form, found in the same run
    assert groups["aten.digamma.default"] == [
        f"model.py:{MIX} -> check_library.py:{LGAMMA} in Mixer.forward (gradient)"
    ]
    (embedding,) = groups["aten.embedding_dense_backward.default"]
    assert embedding.startswith(f"model.py:{MIX} -> sparse.py:"), embedding
    assert embedding.endswith("in Embedding.forward: scale_grad_by_freq=True (gradient)")
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("rdu-compile: error: "), result.stderr
    assert f"{model_file}: {len(groups)} of " in errors[0], errors[0]


def test_check_inference_names_the_model_lines(model_file: Path) -> None:
    """In inference the Bessel function sits in a subgraph of the export (``no_grad``), which
    decomposing inlines as generated code: its location is still the model's and library's."""
    result = _check(str(model_file), "--inference")
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("model.py (inference): ")
    assert f"  model.py:{MIX} -> check_library.py:{BESSEL} in Mixer.forward\n" in result.stdout
    assert "eval_with_key" not in result.stdout
    assert "digamma" not in result.stdout and "embedding_dense_backward" not in result.stdout


def test_check_of_a_supported_model_is_one_line() -> None:
    result = _check(str(MLP_FILE))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and not result.stderr, result.output
    assert lines[0].startswith("model.py (training): all ") and " ops supported (" in lines[0]


@pytest.mark.parametrize("inference", [False, True])
def test_compile_error_names_both_frames(model_file: Path, tmp_path: Path, inference: bool) -> None:
    """The ordinary compile stops at the first refused op, in one line naming both frames
    (a model whose first refused op is the library's: the Bessel function, in a subgraph)."""
    source = MODEL.replace("torch.i0(x)", "x")
    path = model_file.parent / f"model_{int(inference)}.py"
    path.write_text(source)
    command = [sys.executable, "-m", "tools.rdu_compile", str(path)]
    command += ["--output-folder", str(tmp_path), *(["--inference"] if inference else [])]
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"rdu-compile: error: {path.name}:{MIX}: unsupported op aten.special_bessel_j0.default "
        f"(check_library.py:{BESSEL} in Mixer.forward, from {path.name}:{MIX})"
    ]


def test_error_text_of_a_gradient() -> None:
    from compiler.frontend.errors import UnsupportedOpError
    from compiler.frontend.locations import CallSite

    site = CallSite("activation.py", 143, "ReLU.forward")
    assert str(UnsupportedOpError("model.py:30", "aten.x.default", "", True, site)) == (
        "model.py:30: unsupported op aten.x.default (gradient of activation.py:143 in "
        "ReLU.forward, from model.py:30)"
    )
    assert str(UnsupportedOpError("model.py:30", "aten.x.default", "why", True)) == (
        "model.py:30: unsupported op aten.x.default: why (gradient of this line)"
    )


def test_qualified_names_of_library_functions(tmp_path: Path) -> None:
    from compiler.frontend.locations import qualified_name

    path = tmp_path / "lib.py"
    path.write_text(
        textwrap.dedent(
            """\
            def helper():
                return 1


            class Outer:
                class Inner:
                    def forward(self):
                        def local():
                            return 2
                        return local()
            """
        )
    )
    assert qualified_name(path, 2, "helper") == "helper"
    assert qualified_name(path, 10, "forward") == "Outer.Inner.forward"
    assert qualified_name(path, 9, "local") == "Outer.Inner.forward.<locals>.local"
    assert qualified_name(path, 4, "?") == "?"


@pytest.mark.parametrize(
    ("zoo", "inference"),
    [("roberta", False), ("roberta", True), ("swin", True)],
)
def test_zoo_models_convert_every_op(zoo: str, inference: bool) -> None:
    """RoBERTa (int32 position ids) and Swin (the channels-last restride of its pooling) at
    their library defaults: nothing refused. The zoo's own test compiles every zoo model whole
    (MobileNetV2's in-place dropout and Swin's drop path in training among them)."""
    pytest.importorskip("transformers")
    import torch

    from compiler.frontend import check_ops
    from tools.cli import model_namespace
    from tools.model_file import load_model_file

    model_file = load_model_file(ROOT / "examples" / "zoo" / "model.py")
    shared = {"batch_size": 2, "seed": 0, "epoch": 0, "debug": False}
    args = model_namespace(model_file, ["--zoo", zoo], shared)
    torch.manual_seed(0)
    spec = model_file.spec(model_file.call("model", args), args, inference=inference)
    result = check_ops(spec, inference=inference)
    assert result.issues == [], [str(i.error()) for i in result.issues]
    assert len(result.ops) > 10


def _spec(module, inputs, targets, loss):
    from compiler.frontend import ModelSpec

    return ModelSpec("m", module, inputs, targets, loss, None, Path(__file__))


def test_check_lists_complex_ops_past_a_complex_saved_activation() -> None:
    """A complex op the frontend does not rewrite as pairs of reals (the magnitude): its
    complex operands stay complex, and the training check lists the ops instead of stopping
    at the complex value the backward reads."""
    import torch

    class Magnitude(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            turns = torch.polar(torch.ones(4), torch.arange(4.0))
            pairs = torch.view_as_complex(self.fc(x).reshape(-1, 4, 2))
            return (pairs * turns).abs()

    from compiler.frontend import check_ops

    spec = _spec(
        Magnitude(), (torch.randn(3, 8),), (torch.randn(3, 4),), torch.nn.functional.mse_loss
    )
    refused = {i.op for i in check_ops(spec, inference=False).issues}
    # the magnitude's gradient (sgn), and the complex values left complex for it
    assert {"aten.sgn.default", "aten.polar.default", "aten.view_as_complex.default"} <= refused


def test_check_lists_sizes_set_by_the_data() -> None:
    """Sizes read from a tensor (JetMoE's ``expert_size.tolist()`` feeding a ``split``): the
    inference check lists the read and the split, and stops at the shapes they set."""
    import torch

    class Experts(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
            sizes = (ids.unsqueeze(1) == torch.arange(2)).sum(0).tolist()
            parts = self.fc(x).split(sizes)
            return torch.cat([p * (i + 1) for i, p in enumerate(parts)])

    from compiler.frontend import check_ops

    inputs = (torch.randn(5, 4), torch.tensor([0, 1, 1, 0, 1]))
    spec = _spec(Experts(), inputs, (), None)
    issues = check_ops(spec, inference=True).issues
    refused = {i.op: str(i.error()) for i in issues}
    assert "aten._local_scalar_dense.default" in refused, refused
    assert "split sizes set by the data" in refused["aten.split_with_sizes.default"], refused
