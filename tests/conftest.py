"""Fixtures shared by the test suite: an offline tiny model, small datasets, fast trainer args,
and a way to pin what the model "generates" so advantages can be checked by hand."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread: the models here are tiny, so threads only add overhead, and on a busy
# 2-core machine torch's spinning threads slow a training step down by 10x or more.
# Subprocesses (CLI and multi-process tests) inherit it through the environment.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
# A few hundred rows of each GSM8K split, committed with its licence (see tests/data/gsm8k/README.md).
GSM8K_SAMPLE_DIR = REPO / "tests" / "data" / "gsm8k"
# Set to a folder with the full train.jsonl and test.jsonl to run the data tests on all 8,792 rows.
GSM8K_ENV = "TRL_PLUS_GSM8K_DIR"


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def gsm8k_dir() -> Path:
    """A folder with GSM8K's `train.jsonl` and `test.jsonl`: the committed sample, or the full set
    named by `TRL_PLUS_GSM8K_DIR`. A name that does not hold both files fails the test (never skips),
    so a misconfigured CI cannot pass by running less."""
    path = os.environ.get(GSM8K_ENV)
    folder = Path(path).expanduser() if path else GSM8K_SAMPLE_DIR
    missing = [name for name in ("train.jsonl", "test.jsonl") if not (folder / name).is_file()]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found in {folder}" + (f" (from {GSM8K_ENV})" if path else ""))
    return folder


@pytest.fixture(scope="session")
def gsm8k_is_full(gsm8k_dir) -> bool:
    """True when the tests run on the full GSM8K (7,473 train + 1,319 test rows), False on the sample."""
    return gsm8k_dir.resolve() != GSM8K_SAMPLE_DIR.resolve()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A saved tiny Llama model directory (seed 0), built once per test session."""
    from trl_plus.tiny import save_tiny_model

    return str(save_tiny_model(tmp_path_factory.mktemp("tiny-model"), seed=0))


@pytest.fixture
def addition_dataset():
    """A plain-text prompt dataset of `What is a+b?` problems with the `answer` column."""
    from trl_plus.data import generate_problems, to_prompt_dataset

    def make(n: int = 16, seed: int = 0, conversational: bool = False):
        return to_prompt_dataset(generate_problems(n, seed=seed), system_prompt=None, conversational=conversational)

    return make


@pytest.fixture
def fast_args(tmp_path):
    """Keyword arguments for any GRPOConfig subclass: CPU, 2 steps, 4 completions of <= 8 tokens."""

    def make(**overrides):
        kwargs = {
            "output_dir": str(tmp_path / "out"),
            "use_cpu": True,
            "bf16": False,
            "max_steps": 2,
            "per_device_train_batch_size": 4,
            "num_generations": 4,
            "max_completion_length": 8,
            "learning_rate": 1e-2,
            "logging_steps": 1,
            "save_strategy": "no",
            "report_to": [],
            "seed": 0,
            "disable_tqdm": True,
            "gradient_checkpointing": False,  # TRL defaults it on; it only costs time on a 1M model
        }
        kwargs.update(overrides)
        return kwargs

    return make


def pin_completions(trainer, texts: list[str]):
    """Make `trainer` "generate" `texts` (cycled) instead of sampling, so rewards are known.

    Patches `_generate_single_turn`, the lowest generation hook of TRL's GRPOTrainer, so the
    rest of TRL's pipeline (decoding, scoring, gathering, advantages) runs as usual.
    """
    tok = trainer.processing_class
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]

    def fake(prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        return [ids[i % len(ids)] for i in range(len(prompt_ids))], None

    trainer._generate_single_turn = fake
    return ids


@pytest.fixture
def pin():
    return pin_completions


def trainable_snapshot(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def frozen_snapshot(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}


def changed(before: dict, model) -> list[str]:
    params = dict(model.named_parameters())
    return [n for n, p in before.items() if not __import__("torch").equal(p, params[n].detach())]


def completion_logps(model, out):
    """Per-token log-probs of the completion tokens of a scored batch, computed independently of TRL."""
    import torch

    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], 1)
    attn = torch.cat([out["prompt_mask"], out["completion_mask"]], 1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
    T = out["completion_ids"].size(1)
    lp = torch.log_softmax(logits[:, -T:].float(), -1)
    return lp.gather(-1, out["completion_ids"].unsqueeze(-1)).squeeze(-1)
