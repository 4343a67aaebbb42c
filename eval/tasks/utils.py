"""Helpers that the gsm8k_reasoning task's YAML references with `!function utils.<name>`."""

from __future__ import annotations

from trl_plus.data import SYSTEM_PROMPT


def process_docs(dataset):
    """Add the training system prompt as a `system_prompt` column, which the YAML's `description` renders."""
    if "system_prompt" in dataset.column_names:
        return dataset
    return dataset.add_column("system_prompt", [SYSTEM_PROMPT] * len(dataset))
