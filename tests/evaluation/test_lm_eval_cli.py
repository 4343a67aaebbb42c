"""`trl-plus eval`: a PEFT adapter directory end to end, and one-line errors for bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

GSM8K_DIR = Path(__file__).resolve().parents[1] / "data" / "gsm8k"  # the committed sample
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(monkeypatch):
    """trl_plus.cli.main with only the `eval` subcommand registered, so the test does not depend on the others."""
    from trl_plus import cli as cli_module

    monkeypatch.setattr(cli_module, "COMMANDS", {"eval": "trl_plus.commands.evaluate"})
    return cli_module.main


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory):
    """A LoRA adapter on the tiny model, saved without a tokenizer (the CLI takes the base's)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from trl_plus.tiny import save_tiny_model

    root = tmp_path_factory.mktemp("peft")
    base = save_tiny_model(root / "base")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    model.save_pretrained(root / "adapter")
    cfg = json.loads((root / "adapter" / "adapter_config.json").read_text())
    assert Path(cfg["base_model_name_or_path"]).resolve() == base.resolve()
    assert not (root / "adapter" / "config.json").exists()
    return root / "adapter"


@pytest.mark.e2e
def test_cli_evaluates_a_peft_adapter_directory(cli, adapter_dir, tmp_path, capsys):
    out_json = tmp_path / "scores" / "eval.json"
    rc = cli(["eval", str(adapter_dir), "--tasks", "gsm8k,gsm8k_reasoning", "--data-dir", str(GSM8K_DIR),
              "--limit", "2", "--num-fewshot", "0", "--max-gen-toks", "4", "--output-json", str(out_json)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "|gsm8k_reasoning|" in printed and "strict-match" in printed and "flexible-extract" in printed
    report = json.loads(out_json.read_text())
    assert report["checkpoint"] == str(adapter_dir)
    for task in ("gsm8k", "gsm8k_reasoning"):
        for filt in ("strict-match", "flexible-extract"):
            scores = report["tasks"][task][filt]
            assert 0.0 <= scores["exact_match"] <= 1.0
            assert "exact_match_stderr" in scores
        assert report["n_samples"][task]["effective"] == 2


def _error(cli, capsys, argv):
    rc = cli(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("trl-plus eval: error: ") and "\n" not in err
    return err


@pytest.mark.e2e
def test_cli_bad_input_errors(cli, adapter_dir, tmp_path, capsys, monkeypatch):
    data = ["--data-dir", str(GSM8K_DIR)]
    err = _error(cli, capsys, ["eval", str(tmp_path / "missing"), *data])
    assert "does not exist" in err and "config.json" in err

    err = _error(cli, capsys, ["eval", str(tmp_path), *data])
    assert "not a model directory" in err

    err = _error(cli, capsys, ["eval", str(adapter_dir), "--tasks", "gsm8k_reasonin", *data])
    assert "Unknown task 'gsm8k_reasonin'" in err and "gsm8k_reasoning" in err

    err = _error(cli, capsys, ["eval", str(adapter_dir), "--data-dir", str(tmp_path)])
    assert "train.jsonl or test.jsonl" in err

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    err = _error(cli, capsys, ["eval", str(adapter_dir), "--load-in-4bit", *data])
    assert "pip install bitsandbytes" in err


def test_eval_command_module_is_light():
    """Parsing `trl-plus eval --help` must not import torch or lm-eval."""
    code = ("import sys, trl_plus.commands.evaluate; "
            "print(sorted(m for m in ('torch', 'lm_eval', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_adapter_loads_in_4bit_with_lora_on_top(adapter_dir):
    import bitsandbytes as bnb
    from peft import PeftModel

    from eval import load_model

    model, tok = load_model(adapter_dir, load_in_4bit=True, device="cpu")
    assert isinstance(model, PeftModel)  # not merged: LoRA stays on the 4-bit base
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj.base_layer, bnb.nn.Linear4bit) and "default" in q_proj.lora_A
    assert tok.chat_template  # taken from the base model directory
