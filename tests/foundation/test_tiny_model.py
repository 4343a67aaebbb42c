"""The offline tiny model: build, save, reload with HF_HUB_OFFLINE=1, generate."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_plus.tiny import FORMAT_MARKERS, build_tiny_model, cached_tiny_model, save_tiny_model

ANSWER = "<reasoning>\n47+38=85\n</reasoning>\n<answer>\n#### 85\n</answer>"


def test_saved_directory_reloads_offline_and_generates(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = save_tiny_model(tmp_path / "m", seed=3)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in path.iterdir()}
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    enc = tok(["What is 1+2?\n"], return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape == (1, enc["input_ids"].shape[1] + 4)
    assert (tok.pad_token, tok.eos_token, tok.bos_token) == ("<pad>", "</s>", "<s>")
    assert tok.chat_template and tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                          add_generation_prompt=True).endswith("<|assistant|>\n")


def test_tokenizer_is_character_level_with_single_token_markers(tmp_path):
    tok = AutoTokenizer.from_pretrained(save_tiny_model(tmp_path / "m"))
    ids = tok(ANSWER, add_special_tokens=False)["input_ids"]
    # 4 tags + '####' = 5 single tokens, "47+38=85" + "85" = 10 characters, 1 space, 5 newlines.
    assert len(ids) == 5 + 10 + 1 + 5
    assert tok.decode(ids) == ANSWER  # whitespace survives the round trip
    for marker in FORMAT_MARKERS:
        assert len(tok(marker, add_special_tokens=False)["input_ids"]) == 1


def test_same_seed_same_weights_other_seed_differs():
    a, _ = build_tiny_model(seed=1)
    b, _ = build_tiny_model(seed=1)
    c, _ = build_tiny_model(seed=2)
    wa, wb, wc = (m.model.layers[0].self_attn.q_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_sizes():
    tiny, _ = build_tiny_model(size="tiny")
    small, _ = build_tiny_model(size="small")
    n = lambda m: sum(p.numel() for p in m.parameters())
    assert 0.5e6 < n(tiny) < 2e6 < n(small) < 10e6


def test_cached_model_is_built_once_per_size_and_seed(tmp_path):
    logs = []
    tiny = cached_tiny_model(seed=5, cache_dir=tmp_path, log=logs.append)
    small = cached_tiny_model(seed=5, cache_dir=tmp_path, log=logs.append, size="small")
    again = cached_tiny_model(seed=5, cache_dir=tmp_path, log=logs.append, size="small")
    assert (tiny.name, small.name, again) == ("tiny-seed5", "small-seed5", small)
    assert [m.split()[0] for m in logs] == ["built", "built", "reusing"]
    n = lambda p: sum(t.numel() for t in AutoModelForCausalLM.from_pretrained(p).parameters())
    assert n(tiny) < n(small)
    with pytest.raises(ValueError, match="Unknown size 'huge'; choose one of"):
        cached_tiny_model(cache_dir=tmp_path, size="huge")
