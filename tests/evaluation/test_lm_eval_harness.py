"""eval.evaluate on the tiny model with local GSM8K, and its one-line errors for bad input."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

GSM8K_DIR = Path(__file__).resolve().parents[1] / "data" / "gsm8k"  # the committed sample
FAST = {"limit": 2, "max_gen_toks": 4}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from trl_plus.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny"))


def _assert_exact_match(metrics, task):
    for filt in ("strict-match", "flexible-extract"):
        assert 0.0 <= metrics[task][f"exact_match,{filt}"] <= 1.0
        assert f"exact_match_stderr,{filt}" in metrics[task]


def test_evaluate_live_model_on_gsm8k_and_gsm8k_reasoning():
    from eval import evaluate
    from trl_plus.tiny import build_tiny_model

    model, tok = build_tiny_model()
    model.train()
    out = evaluate(model, ["gsm8k", "gsm8k_reasoning"], data_dir=GSM8K_DIR, tokenizer=tok, num_fewshot=0, **FAST)
    for task in ("gsm8k", "gsm8k_reasoning"):
        _assert_exact_match(out["metrics"], task)
        assert out["n-samples"][task]["effective"] == 2
        assert out["results"][task]["exact_match,strict-match"] == out["metrics"][task]["exact_match,strict-match"]
    assert out["n-shot"] == {"gsm8k": 0, "gsm8k_reasoning": 0}
    assert out["apply_chat_template"] is True  # the tiny tokenizer has a chat template
    assert model.training  # train mode restored


def test_evaluate_checkpoint_path_plain_text_with_system_instruction(tiny_dir):
    from eval import evaluate

    out = evaluate(tiny_dir, "gsm8k_reasoning", data_dir=GSM8K_DIR, apply_chat_template=False,
                   system_instruction="Be brief.", log_samples=True, **FAST)
    _assert_exact_match(out["metrics"], "gsm8k_reasoning")
    assert out["apply_chat_template"] is False
    prompt = out["samples"]["gsm8k_reasoning"][0]["arguments"][0][0]
    assert prompt.startswith("Be brief.\n\nRespond in the following format:") and "<|system|>" not in prompt


# ---------------------------------------------------------------------------------------- bad input
def _one_line(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg
    return msg


def test_missing_checkpoint(tmp_path):
    from eval import evaluate

    with pytest.raises(FileNotFoundError) as e:
        evaluate(str(tmp_path / "nope"), "gsm8k_reasoning", data_dir=GSM8K_DIR)
    _one_line(e, "does not exist", "config.json", "adapter_config.json")


def test_directory_that_is_not_a_model(tmp_path):
    from eval import EvalInputError, evaluate

    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(EvalInputError) as e:
        evaluate(str(tmp_path), "gsm8k_reasoning", data_dir=GSM8K_DIR)
    _one_line(e, "not a model directory", "checkpoint-N")


def test_unknown_task_lists_close_matches(tiny_dir):
    from eval import EvalInputError, evaluate

    with pytest.raises(EvalInputError) as e:
        evaluate(str(tiny_dir), "gsm8k_reasonin", data_dir=GSM8K_DIR)
    _one_line(e, "Unknown task 'gsm8k_reasonin'", "did you mean", "gsm8k_reasoning", "lm-eval ls tasks")


@pytest.mark.parametrize("present", [[], ["train.jsonl"]])
def test_data_dir_without_the_jsonl_files(tiny_dir, tmp_path, present):
    from eval import evaluate

    for name in present:
        (tmp_path / name).write_text((GSM8K_DIR / name).read_text().splitlines()[0] + "\n")
    with pytest.raises(FileNotFoundError) as e:
        evaluate(str(tiny_dir), "gsm8k", data_dir=tmp_path)
    msg = _one_line(e, "test.jsonl", "grade-school-math")
    assert ("train.jsonl or test.jsonl" in msg) == (not present)


def test_load_in_4bit_without_bitsandbytes(tiny_dir, monkeypatch):
    from eval import EvalInputError, evaluate

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` fail
    with pytest.raises(EvalInputError) as e:
        evaluate(str(tiny_dir), "gsm8k_reasoning", data_dir=GSM8K_DIR, load_in_4bit=True)
    _one_line(e, "bitsandbytes", "pip install bitsandbytes")


def test_live_model_without_tokenizer():
    from eval import EvalInputError, evaluate
    from trl_plus.tiny import build_tiny_model

    with pytest.raises(EvalInputError) as e:
        evaluate(build_tiny_model()[0], "gsm8k_reasoning", data_dir=GSM8K_DIR)
    _one_line(e, "tokenizer=")


@pytest.mark.parametrize("device, compute", [("cpu", "float32"), ("cuda", "bfloat16")])
def test_4bit_loading_is_trls_quantization_config(device, compute):
    import torch
    from trl import ModelConfig, get_quantization_config

    from eval.harness import quantization_config

    ours = quantization_config(device)
    trls = get_quantization_config(ModelConfig(load_in_4bit=True, use_bnb_nested_quant=True, dtype=compute))
    assert ours.to_dict() == trls.to_dict()
    assert (ours.bnb_4bit_quant_type, ours.bnb_4bit_use_double_quant) == ("nf4", True)
    assert ours.bnb_4bit_compute_dtype == getattr(torch, compute)
