"""Argument checks of the functional core (`trl_plus.core`): tensor shapes, dtypes and value ranges.

The other kind of input check, of a training setup (config, reward outputs, tokenizer, dataset), is
`trl_plus.engine.training_checks`.

Every public core function validates shapes up front, so a wrong call fails loudly with both shapes
named instead of broadcasting silently.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _check_same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"`{name_a}` has shape {_shape(a)} but `{name_b}` has shape {_shape(b)}; they must match.")


def _check_mask(mask: Tensor) -> None:
    if mask.dim() != 2:
        raise ValueError(f"`mask` must have shape (B, T), got shape {_shape(mask)}.")


def _check_rows(name: str, x: Tensor, mask: Tensor) -> None:
    """`x` must be `(B,)` with `B = mask.shape[0]`."""
    if x.dim() != 1 or x.shape[0] != mask.shape[0]:
        raise ValueError(
            f"`{name}` has shape {_shape(x)} but `mask` has shape {_shape(mask)}; expected `{name}` of "
            f"shape (B,) = ({mask.shape[0]},)."
        )


def _check_groups(rewards: Tensor, group_ids: Tensor) -> None:
    if rewards.dim() != 1:
        raise ValueError(f"`rewards` must have shape (B,), got shape {_shape(rewards)}.")
    _check_same_shape("rewards", rewards, "group_ids", group_ids)
    if group_ids.is_floating_point() or group_ids.is_complex():
        raise ValueError(f"`group_ids` must be an integer tensor, got dtype {group_ids.dtype}.")


def _check_discount(name: str, value: float) -> None:
    # A discount outside [0, 1] either flips signs (negative) or makes long completions' returns explode (> 1).
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1], got {value}.")


def _float_dtype(*tensors: Tensor) -> torch.dtype:
    for t in tensors:
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


def _global_sum(t: Tensor, reducer: Any) -> Tensor:
    if reducer is None:
        return t
    if hasattr(reducer, "reduce"):  # accelerate.Accelerator and look-alikes
        return reducer.reduce(t, reduction="sum")
    if callable(reducer):
        return reducer(t)
    raise TypeError(
        f"`reducer` must have a `.reduce(tensor, reduction='sum')` method or be callable, got {type(reducer).__name__}."
    )
