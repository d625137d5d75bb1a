"""The training trace's stack traces (compiler/frontend/trace.py): recorded with ``_LazyLines``,
which reads a frame's source line only when the trace keeps the frame, they are the text
torch's own ``CapturedTraceback`` gives."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch.utils._traceback import CapturedTraceback

from compiler.frontend import trace
from compiler.targets import get_target
from tools.rdu_compile import model_spec

ROOT = Path(__file__).resolve().parents[2]


def _stack_traces() -> dict[str, str | None]:
    """Node name -> stack trace of the Hugging Face GPT-2 example's training step (deep
    stacks: the library's modules inside the example's wrapper)."""
    pytest.importorskip("transformers")
    _, spec = model_spec(
        str(ROOT / "examples" / "hf_gpt2" / "model.py"), [], False, 2, 0, False, get_target("sn10")
    )
    graph = trace.trace_training(spec).graph
    return {node.name: node.meta.get("stack_trace") for node in graph.nodes}


def test_the_stack_traces_are_torchs_own(monkeypatch: pytest.MonkeyPatch) -> None:
    ours = _stack_traces()
    monkeypatch.setattr(trace, "_LazyLines", CapturedTraceback)
    torchs = _stack_traces()
    assert ours == torchs
    located = [t for t in ours.values() if t and "modeling_gpt2.py" in t]
    assert len(located) > 50  # the forward's nodes, and the backward's that take theirs
