"""Offline tiny causal LMs for tests, the demo and the benchmarks.

Nothing here touches the Hugging Face Hub: the tokenizer is built in-process (one token
per character, plus the answer-format markers as single ordinary tokens) and the model is
a randomly initialised Llama whose size is picked by name.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

# The markers are ordinary tokens (not special) so `skip_special_tokens=True` keeps them in
# decoded completions, where the reward functions need to see them.
FORMAT_MARKERS = ["<reasoning>", "</reasoning>", "<answer>", "</answer>", "####"]
SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}

# A minimal chat template: role headers in plain characters, so the character tokenizer
# covers them, and a generation prompt that opens the assistant turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

SIZES = {
    # 1.06M parameters: the shape measured to learn 2-digit addition on CPU in minutes (hidden 128,
    # 4 layers). Llama rather than Qwen2: transformers 5 loads any `qwen2` checkpoint with
    # Qwen2Tokenizer, ignoring the saved tokenizer class, and that tokenizer drops whitespace.
    "tiny": {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4,
             "num_key_value_heads": 4},
    "small": {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 6, "num_attention_heads": 8,
              "num_key_value_heads": 4},
}


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level fast tokenizer with pad/bos/eos, the format markers and a chat template."""
    specials = list(SPECIAL_TOKENS.values())
    chars = [c for c in string.printable if c not in "\x0b\x0c"]
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # Every character is its own pre-token; WordLevel then maps it, unknown ones to <unk>.
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, **SPECIAL_TOKENS)
    tok.add_tokens(FORMAT_MARKERS)
    tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "left"
    return tok


def build_tiny_model(seed: int = 0, size: str = "tiny") -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """Build a randomly initialised Llama causal LM and its tokenizer, deterministically from `seed`."""
    if size not in SIZES:
        raise ValueError(f"Unknown size {size!r}; choose one of {sorted(SIZES)}.")
    tok = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        **SIZES[size],
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    return model, tok


def save_tiny_model(out_dir: str | Path, seed: int = 0, size: str = "tiny") -> Path:
    """Write a complete model directory (config, safetensors, tokenizer) loadable offline.

    Example:
        >>> path = save_tiny_model("/tmp/tiny")
        >>> AutoModelForCausalLM.from_pretrained(path)  # works with HF_HUB_OFFLINE=1
    """
    out = Path(out_dir)
    model, tok = build_tiny_model(seed=seed, size=size)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def cached_tiny_model(seed: int = 0, cache_dir: str | Path | None = None, log=print, size: str = "tiny") -> Path:
    """The model of `size` and `seed`, built once under `cache_dir` ($TRL_PLUS_CACHE or ~/.cache/trl-plus), reused."""
    import os

    cache = Path(cache_dir or os.environ.get("TRL_PLUS_CACHE", Path.home() / ".cache" / "trl-plus"))
    path = cache / f"{size}-seed{seed}"
    if (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file():
        log(f"reusing the tiny model in {path}")
    else:
        save_tiny_model(path, seed=seed, size=size)
        log(f"built the tiny model in {path}")
    return path
