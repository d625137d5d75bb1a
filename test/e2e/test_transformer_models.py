"""Transformer models a user brings: Hugging Face GPT2LMHeadModel and
BertForSequenceClassification built from a config (2 layers, hidden 128) and loaded from a local
``save_pretrained`` folder, and torch.nn.TransformerEncoderLayer with MultiheadAttention in a
user model, each with its library's dropout and AdamW. Each compiles, passes rdu-test at its
defaults, and a few fine-tuning steps on the fabric lower the loss."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from e2e_helpers import ROOT, in_process, rdu_test

from runtime.pef import read_pef
from runtime.session import TrainingSession
from tools.model_file import load_model_file

MODELS = {
    "hf_gpt2": ["--block-size", "8"],
    "hf_bert": ["--seq-len", "8"],
    "torch_transformer": ["--seq-len", "8"],
}
BATCH = 2


def _needs(name: str) -> None:
    if name.startswith("hf_"):
        pytest.importorskip("transformers")


def _compile(name: str, out: Path, *extra: str) -> Path:
    model = ROOT / "examples" / name / "model.py"
    result = in_process(
        "rdu-compile", str(model), "-b", str(BATCH), "--output-folder", str(out),
        *MODELS[name], *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out / name / f"{name}.pef"


@pytest.mark.parametrize("name", list(MODELS))
def test_compiles_matches_torch_and_fine_tunes(name: str, tmp_path: Path) -> None:
    _needs(name)
    pef = _compile(name, tmp_path)
    model_path = ROOT / "examples" / name / "model.py"
    rdu_test(model_path, pef, *MODELS[name])

    model_file = load_model_file(model_path)
    parser = argparse.ArgumentParser()
    model_file.add_args(parser)
    args = parser.parse_args(MODELS[name])
    args.batch_size, args.seed, args.epoch = BATCH, 0, 0
    torch.manual_seed(0)
    model = model_file.call("model", args)
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    session = TrainingSession(read_pef(pef), state)
    group = model_file.call("optimizer", model.parameters(), args).param_groups[0]
    beta1, beta2 = group["betas"]  # AdamW, as the examples' authors would train them
    hyper = {"lr": group["lr"], "weight_decay": group["weight_decay"], "eps": group["eps"]}
    hyper.update(beta1=beta1, beta2=beta2)
    (x,), (y,) = next(iter(model_file.batches("train", args)))
    batch = {"input.0": x.numpy(), "target.0": y.numpy()}
    losses = [session.step(batch, hyper).loss for _ in range(4)]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses


def test_hugging_face_model_from_a_save_pretrained_folder(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    model_file = load_model_file(ROOT / "examples" / "hf_bert" / "model.py")
    args = argparse.Namespace(pretrained=None, seq_len=8, batch_size=BATCH, seed=0, epoch=0)
    torch.manual_seed(0)
    model_file.call("model", args).classifier.save_pretrained(tmp_path / "bert")
    pef = _compile("hf_bert", tmp_path / "out", "--pretrained", str(tmp_path / "bert"))
    rdu_test(model_file.path, pef, *MODELS["hf_bert"], "--pretrained", str(tmp_path / "bert"))


def test_hf_gpt2_size_small_is_the_library_default_config() -> None:
    """``--size small`` is GPT-2 small as ``GPT2Config()`` defines it (checked on the config,
    without building the 124M-parameter model); ``--dropout`` sets all three rates, ``--n-layer``
    the number of blocks."""
    transformers = pytest.importorskip("transformers")
    example = load_model_file(str(ROOT / "examples" / "hf_gpt2" / "model.py"))
    gpt2_config = example.function("config")
    small = argparse.Namespace(
        size="small", dropout=0.0, block_size=128, pretrained=None, n_layer=None
    )
    config = gpt2_config(small)
    default = transformers.GPT2Config()
    assert (config.n_layer, config.n_embd, config.n_head) == (12, 768, 12)
    assert (config.vocab_size, config.n_positions) == (default.vocab_size, default.n_positions)
    assert config.resid_pdrop == config.embd_pdrop == config.attn_pdrop == 0.0
    tiny = argparse.Namespace(
        size="tiny", dropout=None, block_size=8, pretrained=None, n_layer=None
    )
    assert gpt2_config(tiny).n_layer == 2
    assert gpt2_config(tiny).resid_pdrop == default.resid_pdrop
    six = argparse.Namespace(size="small", dropout=0.0, block_size=128, pretrained=None, n_layer=6)
    assert (gpt2_config(six).n_layer, gpt2_config(six).n_embd) == (6, 768)
    too_long = argparse.Namespace(
        size="tiny", dropout=None, block_size=65, pretrained=None, n_layer=None
    )
    with pytest.raises(ValueError, match="longer than the model's 64 positions"):
        gpt2_config(too_long)
