"""The Hugging Face Llama example end to end: ``LlamaForCausalLM`` from a small config (hidden
32, 2 layers, 4 heads over 2 key/value heads) compiles for training and inference and passes
``rdu-test`` at its defaults; 30 AdamW steps on the fabric track torch's losses within 1e-3 at
every step and the loss falls; greedy generation with ``rdu-run --inference`` is torch's (the
example's loop and transformers' own ``generate``); a ``save_pretrained`` folder loads with
``--pretrained``.

A session's state is ``state_dict()`` plus the non-persistent buffers (the rotary ``inv_freq``),
which ``state_dict()`` and checkpoints leave out and the tools take from the model.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from e2e_helpers import ROOT, in_process, losses_beside_torch

from runtime.pef import read_pef
from runtime.session import TrainingSession
from tools.model_file import load_model_file

pytest.importorskip("transformers")

LLAMA = ROOT / "examples" / "hf_llama" / "model.py"
SMALL = ["--hidden-size", "32", "--block-size", "16"]
BATCH = 4


def _args(*extra: str, batch: int = BATCH) -> argparse.Namespace:
    model_file = load_model_file(LLAMA)
    parser = argparse.ArgumentParser()
    model_file.add_args(parser)
    args = parser.parse_args([*SMALL, *extra])
    args.batch_size, args.seed, args.epoch = batch, 0, 0
    return args


def _state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The model's state with its non-persistent buffers (rotary ``inv_freq``)."""
    tensors = {**model.state_dict(), **dict(model.named_buffers())}
    return {k: v.detach().numpy().copy() for k, v in tensors.items()}


def _compile(out: Path, *extra: str) -> Path:
    name = extra[extra.index("--pef-name") + 1] if "--pef-name" in extra else "hf_llama"
    result = in_process("rdu-compile", str(LLAMA), "--output-folder", str(out), *SMALL, *extra)
    assert result.returncode == 0, result.stderr
    return out / name / f"{name}.pef"


@pytest.fixture(scope="module")
def llama_pef(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _compile(tmp_path_factory.mktemp("llama"), "-b", str(BATCH))


def test_rdu_test_passes_at_its_defaults(llama_pef: Path) -> None:
    result = in_process("rdu-test", str(LLAMA), "--pef", str(llama_pef), *SMALL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rdu-test: PASS" in result.stdout


def test_30_adamw_steps_track_torch_and_the_loss_falls(llama_pef: Path) -> None:
    model_file = load_model_file(LLAMA)
    args = _args()
    torch.manual_seed(0)
    model = model_file.call("model", args)
    assert "lm.model.rotary_emb.inv_freq" not in model.state_dict()  # non-persistent
    session = TrainingSession(read_pef(llama_pef), _state(model))
    optimizer = model_file.call("optimizer", model.parameters(), args)
    assert isinstance(optimizer, torch.optim.AdamW)
    group = optimizer.param_groups[0]
    hyper = {"lr": group["lr"], "weight_decay": group["weight_decay"], "eps": group["eps"]}
    hyper["beta1"], hyper["beta2"] = group["betas"]
    batches = itertools.islice(
        itertools.chain.from_iterable(model_file.batches("train", _args()) for _ in range(2)), 30
    )
    fabric, reference = losses_beside_torch(session, model_file, model, optimizer, batches, hyper)
    assert len(fabric) == 30
    np.testing.assert_allclose(fabric, reference, rtol=1e-3)
    assert np.mean(fabric[-5:]) < np.mean(fabric[:5]) - 0.5, fabric  # 3.14 nats against 3.98


def _train_in_torch(model_file, model: torch.nn.Module, steps: int) -> None:
    """``steps`` quick AdamW steps in torch (lr 1e-2): weights that write more than one
    character, so that generation has something to get wrong."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    args = _args("--steps-per-epoch", str(steps))
    for (x,), (y,) in model_file.batches("train", args):
        optimizer.zero_grad()
        model_file.call("loss", model(x), y).backward()
        optimizer.step()


def test_greedy_generation_through_the_inference_pef_is_torchs(tmp_path: Path) -> None:
    pef = _compile(tmp_path, "--inference", "-b", "1", "--pef-name", "llama-inf")
    assert {s.kind for s in read_pef(pef).sections} == {"forward"}
    model_file = load_model_file(LLAMA)
    prompt, new = "Shall I", 9  # 16 characters: the whole text fits the context
    args = _args("--prompt", prompt, "--max-new-tokens", str(new), batch=1)
    torch.manual_seed(0)
    model = model_file.call("model", args)
    _train_in_torch(model_file, model, 30)
    model.eval()
    torch.save(model.state_dict(), tmp_path / "trained.pt")  # no inv_freq: persistent=False
    result = in_process(
        "rdu-run", str(LLAMA), "--pef", str(pef), "--inference", "--results-dir", str(tmp_path),
        "--init-ckpt-path", str(tmp_path / "trained.pt"), "--prompt", prompt,
        "--max-new-tokens", str(new), *SMALL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "generated.txt").read_text()
    assert text.startswith(prompt) and len(text) == len(prompt) + new
    assert len(set(text[len(prompt) :])) > 1, text  # trained past a constant guess

    def on_torch(inputs: tuple[torch.Tensor, ...]) -> tuple[np.ndarray, ...]:
        with torch.no_grad():
            return (model(*inputs).numpy(),)

    assert text == model_file.call("generate", on_torch, args)

    # transformers' own greedy decoding (a growing sequence and a KV cache) agrees.
    gpt = model_file.module._gpt_example()
    ids = torch.from_numpy(gpt.encode(prompt))[None]
    with torch.no_grad():  # no end-of-text token: the config's default one is a character
        out = model.lm.generate(ids, max_new_tokens=new, do_sample=False, eos_token_id=None)
    assert gpt.decode(out[0]) == text


def test_a_save_pretrained_folder_loads_with_pretrained(tmp_path: Path) -> None:
    model_file = load_model_file(LLAMA)
    torch.manual_seed(123)
    saved = model_file.call("model", _args())
    with torch.no_grad():  # weights no fresh init would give
        saved.lm.model.norm.weight.copy_(torch.linspace(0.5, 1.5, 32))
    saved.lm.save_pretrained(tmp_path / "llama")
    pretrained = ["--pretrained", str(tmp_path / "llama")]

    torch.manual_seed(0)
    model = model_file.call("model", _args(*pretrained))
    for name, value in saved.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)
    pef = _compile(tmp_path / "out", "--inference", "-b", "2", *pretrained)
    result = in_process("rdu-test", str(LLAMA), "--pef", str(pef), *SMALL, *pretrained)
    assert result.returncode == 0, result.stdout + result.stderr


# -- --size 0.5b: Qwen2.5-0.5B's architecture (Qwen2ForCausalLM), plain SGD, hashed words --------

QWEN_SMALL = [
    "--size", "0.5b", "--num-layers", "2", "--hidden-size", "32", "--heads", "4",
    "--kv-heads", "2", "--intermediate-size", "64", "--vocab-size", "512", "--block-size", "16",
]  # fmt: skip
"""The 0.5B preset's architecture (q/k/v biases, tied embeddings, rope theta 1e6, eps 1e-6,
SGD, hashed word tokens) at a test's size; the 0.5B itself is bench/llm.py's (minutes)."""


def _qwen_args(*extra: str) -> argparse.Namespace:
    model_file = load_model_file(LLAMA)
    parser = argparse.ArgumentParser()
    model_file.add_args(parser)
    args = parser.parse_args([*QWEN_SMALL, *extra])
    args.batch_size, args.seed, args.epoch = 1, 0, 0
    return args


def test_size_05b_is_qwen25_05b_published_config() -> None:
    from transformers import Qwen2ForCausalLM

    model_file = load_model_file(LLAMA)
    parser = argparse.ArgumentParser()
    model_file.add_args(parser)
    args = parser.parse_args(["--size", "0.5b", "--block-size", "128"])
    config = model_file.module.qwen_config(args)
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (
        896, 24, 4864,
    )  # fmt: skip
    assert (config.num_attention_heads, config.num_key_value_heads) == (14, 2)
    assert (config.vocab_size, config.tie_word_embeddings) == (151936, True)
    assert config.rope_parameters["rope_theta"] == 1e6 and config.rms_norm_eps == 1e-6
    with torch.device("meta"):  # the shapes without the 2 GB
        lm = Qwen2ForCausalLM(config)
    assert sum(p.numel() for p in lm.parameters()) == 494_032_768  # Qwen2.5-0.5B's count
    assert lm.model.layers[0].self_attn.q_proj.bias is not None
    assert isinstance(model_file.call("optimizer", lm.parameters(), args), torch.optim.SGD)
    tokens = model_file.module.word_tokens(config.vocab_size)
    assert tokens.min() >= 0 and tokens.max() < config.vocab_size
    assert len(np.unique(tokens)) > 800  # the 890 distinct words of the sonnets, spread


def test_size_05b_architecture_compiles_matches_torch_and_trains_with_sgd(
    tmp_path: Path,
) -> None:
    pef = tmp_path / "qwen" / "qwen.pef"
    result = in_process(
        "rdu-compile", str(LLAMA), "--output-folder", str(tmp_path), "-b", "1",
        "--pef-name", "qwen", *QWEN_SMALL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    result = in_process("rdu-test", str(LLAMA), "--pef", str(pef), *QWEN_SMALL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rdu-test: PASS" in result.stdout

    model_file = load_model_file(LLAMA)
    args = _qwen_args()
    torch.manual_seed(0)
    model = model_file.call("model", args)
    assert type(model.lm).__name__ == "Qwen2ForCausalLM"
    session = TrainingSession(read_pef(pef), _state(model))
    optimizer = model_file.call("optimizer", model.parameters(), args)
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["momentum"] == 0
    group = optimizer.param_groups[0]
    hyper = {k: group[k] for k in ("lr", "weight_decay", "momentum", "dampening")}
    batches = itertools.islice(model_file.batches("train", args), 3)
    fabric, reference = losses_beside_torch(session, model_file, model, optimizer, batches, hyper)
    assert len(fabric) == 3 and np.all(np.isfinite(fabric))
    np.testing.assert_allclose(fabric, reference, rtol=1e-5)
