"""The GPT example end to end: rdu-test at its defaults (with dropout too), 50 AdamW
steps on the fabric and in torch agreeing within 1e-3 at every step, the loss below the text's
unigram entropy, and ``rdu-run --inference`` generating the same text from a prompt as torch does.

The model is small here (2 blocks, width 32, context 16, batch 8) so that the file runs in about
a minute; the example's defaults are larger.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from e2e_helpers import ROOT, adamw_losses_beside_torch, in_process, judged, rdu_test

from runtime.pef import read_pef
from tools.model_file import load_model_file

GPT = ROOT / "examples" / "gpt" / "model.py"
SMALL = ["--n-embd", "32", "--block-size", "16", "--n-head", "2"]
BATCH = 8


def _args() -> argparse.Namespace:
    model_file = load_model_file(GPT)
    parser = argparse.ArgumentParser()
    model_file.add_args(parser)
    args = parser.parse_args(SMALL)
    args.batch_size, args.seed, args.epoch = BATCH, 0, 0
    return args


@pytest.fixture(scope="module")
def gpt_pef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gpt")
    result = in_process(
        "rdu-compile", str(GPT), "-b", str(BATCH), "--output-folder", str(out), *SMALL
    )
    assert result.returncode == 0, result.stderr
    return out / "gpt" / "gpt.pef"


def test_rdu_test_passes_at_its_defaults_with_adamw(gpt_pef: Path) -> None:
    report = rdu_test(GPT, gpt_pef, *SMALL)
    end_to_end = judged(report, "end to end")
    for name in ("loss", "output.0", "wte.weight.grad", "wpe.weight.grad"):
        assert name in end_to_end
    assert "blocks.1.attn.c_attn.weight.grad" in judged(report, "backward")
    # AdamW's step, judged on torch's gradients (the one that failed at 1e-5 before)
    assert "blocks.0.attn.c_attn.weight" in judged(report, "optimizer")
    assert "blocks.0.attn.c_attn.weight.exp_avg_sq" in judged(report, "optimizer")


def test_rdu_test_passes_with_dropout(tmp_path: Path) -> None:
    """Dropout in the embeddings, the attention (SDPA's dropout_p) and the residuals: torch's
    reference draws the fabric's masks, so the step matches."""
    drop = [*SMALL, "--dropout", "0.1"]
    result = in_process(
        "rdu-compile", str(GPT), "-b", str(BATCH), "--output-folder", str(tmp_path), *drop
    )
    assert result.returncode == 0, result.stderr
    report = rdu_test(GPT, tmp_path / "gpt" / "gpt.pef", *drop)
    masks = [t for t in report["tensors"] if t["section"] == "forward" and t["max_abs"] == 0]
    assert len(masks) >= 5  # among them the saved dropout masks, equal bit for bit
    assert "blocks.0.attn.c_attn.weight.grad" in judged(report, "end to end")


def test_50_adamw_steps_track_torch_and_beat_the_unigram_entropy(gpt_pef: Path) -> None:
    model_file = load_model_file(GPT)
    args = _args()
    fabric, reference = adamw_losses_beside_torch(model_file, args, gpt_pef, 50)
    # (At lr 3e-3 this run has a loss spike at step 32 where torch alone, its weights nudged by
    # 1e-7, moves by 1.2e-3: the example's 2e-3 keeps training well-conditioned, 4e-6.)
    np.testing.assert_allclose(fabric, reference, rtol=1e-3)
    entropy = model_file.module.unigram_entropy()
    assert 3.0 < entropy < 3.2  # nats a character, for the shipped sonnets
    assert np.mean(fabric[-10:]) < entropy, (fabric[-10:], entropy)  # 3.03 against 3.11


def test_inference_generates_torchs_text_from_a_prompt(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = in_process(
        "rdu-compile", str(GPT), "--inference", "-b", "1", "--pef-name", "gpt-inf",
        "--output-folder", str(out), *SMALL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    pef = out / "gpt-inf" / "gpt-inf.pef"
    prompt, new = "Shall I compare", 12
    result = in_process(
        "rdu-run", str(GPT), "--pef", str(pef), "--inference", "--results-dir", str(tmp_path),
        "--prompt", prompt, "--max-new-tokens", str(new), *SMALL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "generated.txt").read_text()
    assert text.startswith(prompt) and len(text) == len(prompt) + new
    assert text in result.stdout

    model_file = load_model_file(GPT)
    args = _args()
    args.batch_size, args.prompt, args.max_new_tokens = 1, prompt, new
    torch.manual_seed(0)
    model = model_file.call("model", args).eval()

    def forward(inputs: tuple[torch.Tensor, ...]) -> tuple[np.ndarray, ...]:
        with torch.no_grad():
            return (model(*inputs).numpy(),)

    assert model_file.call("generate", forward, args) == text


def test_gpt_on_tiny_is_cut_into_sections_and_still_matches_torch(tmp_path: Path) -> None:
    """The GPT example on the tiny target needs several sections and stays exact."""
    result = in_process(
        "rdu-compile", str(GPT), "-b", str(BATCH), "--arch", "tiny",
        "--output-folder", str(tmp_path), *SMALL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    pef = tmp_path / "gpt" / "gpt.pef"
    kinds = [s.kind for s in read_pef(pef).sections]
    assert kinds.count("forward") > 1 and kinds.count("backward") > 1
    rdu_test(GPT, pef, *SMALL)
