"""Dynamic sampling's batch assembly: row selection and concatenation of the rollout dicts that
`GRPOTrainer._generate_and_score_completions` returns, to build one training batch out of several generation rounds.

Rounds are padded independently by TRL, so the same key can have a different width in each round: prompts are
left-padded, completions and per-token tensors right-padded. `concat_rollouts` pads every part to the widest
(with TRL's own `pad`) and concatenates along the rows. Only the keys TRL emits for text models are supported;
multimodal keys (pixel values, image grids, ...) raise, because their rows do not line up one-to-one with the
completions.
"""

from __future__ import annotations

from typing import Any

import torch
from trl.trainer.utils import pad

# key -> (padding side, padding value); None means "the tokenizer's pad token id".
PADDING: dict[str, tuple[str, Any]] = {
    "prompt_ids": ("left", None),
    "prompt_mask": ("left", 0),
    "completion_ids": ("right", None),
    "completion_mask": ("right", 0),
    "advantages": ("right", 0.0),  # (B,) or (B, T)
    "old_per_token_logps": ("right", 0.0),
    "ref_per_token_logps": ("right", 0.0),
    "sampling_per_token_logps": ("right", 0.0),
    "importance_sampling_ratio": ("right", 1.0),  # (B, T) or (B, 1); TRL's value on padding is exp(0) = 1
    "tool_mask": ("right", 1),  # TRL pads tool_mask with 1
}
# 0-dim entries that describe the whole batch; the caller recomputes them for the assembled batch.
BATCH_SCALARS = ("num_items_in_batch",)


def _check_keys(out: dict[str, Any]) -> None:
    unknown = sorted(k for k in out if k not in PADDING and k not in BATCH_SCALARS)
    if unknown:
        raise ValueError(
            f"Cannot re-assemble a rollout batch with the keys {unknown}: only text-model rollouts are supported "
            f"(keys {sorted(PADDING)}). Turn dynamic sampling off (dynamic_sampling=False) for this model."
        )


def select_rows(out: dict[str, Any], rows: torch.Tensor | slice | list[int]) -> dict[str, Any]:
    """The given rows of every per-row tensor of `out`; batch scalars are left out."""
    _check_keys(out)
    return {k: v[rows] for k, v in out.items() if k not in BATCH_SCALARS and v is not None}


def concat_rollouts(parts: list[dict[str, Any]], pad_token_id: int) -> dict[str, Any]:
    """Concatenate rollout dicts along the rows, padding each 2-D tensor to the widest part.

    Every part must have the same keys. Batch scalars (`num_items_in_batch`) are not carried over.
    """
    if not parts:
        raise ValueError("concat_rollouts needs at least one part.")
    keys = [k for k in parts[0] if k not in BATCH_SCALARS and parts[0][k] is not None]
    for p in parts:
        _check_keys(p)
        if sorted(k for k in p if k not in BATCH_SCALARS and p[k] is not None) != sorted(keys):
            raise ValueError("All rollout parts must have the same keys to be concatenated.")
    result = {}
    for key in keys:
        tensors = [p[key] for p in parts]
        if tensors[0].dim() == 2:  # pad each row to the widest, as TRL pads a single round
            side, value = PADDING[key]
            result[key] = pad([row for t in tensors for row in t], pad_token_id if value is None else value, side)
        else:
            result[key] = torch.cat(tensors, dim=0)
    return result
