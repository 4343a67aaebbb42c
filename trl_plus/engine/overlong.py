"""Overlong reward shaping (DAPO, https://huggingface.co/papers/2503.14476): with `overlong_buffer_len` set, TRL's
`trl.rewards.get_soft_overlong_punishment` (L_max = max_completion_length, L_cache = overlong_buffer_len) is
appended to the reward functions with weight 1. Overlong *filtering* is TRL's `mask_truncated_completions=True`.
"""

from __future__ import annotations

import copy

from trl.rewards import get_soft_overlong_punishment


def with_overlong_reward(reward_funcs, reward_processing_classes, args):
    """Append TRL's soft overlong punishment (weight 1) to the reward functions, their processing classes and
    weights. `args` is copied when its weights change, so the caller's config can be reused."""
    funcs = [] if reward_funcs is None else list(reward_funcs) if isinstance(reward_funcs, list) else [reward_funcs]
    n = len(funcs)
    funcs.append(get_soft_overlong_punishment(max_completion_len=args.max_completion_length,
                                              soft_punish_cache=args.overlong_buffer_len))
    if reward_processing_classes is not None:
        rpc = reward_processing_classes
        reward_processing_classes = [*(rpc if isinstance(rpc, list) else [rpc]), None]  # a plain function: None
    if args.reward_weights is not None:
        if len(args.reward_weights) != n:
            raise ValueError(f"reward_weights has {len(args.reward_weights)} values for {n} reward functions: give "
                             "one per reward function you pass (the overlong punishment gets weight 1 on its own).")
        args = copy.copy(args)
        args.reward_weights = [*args.reward_weights, 1.0]
    return funcs, reward_processing_classes, args
