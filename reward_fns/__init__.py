"""Reward functions for TRL and trl-plus trainers, picked by name and never raising on model output.

The easiest custom reward gets each completion as plain text (also for chat prompts, where TRL passes
lists of messages):

    @reward_fns.text_reward
    def short_answer(text):
        return 1 / (1 + len(text))

Outcome rewards follow TRL's contract `f(prompts, completions, **columns) -> list[float | None]`
(None: abstain on that row); the gold answer arrives as the `answer` column. Process rewards
(`is_process_reward(f)`) return, per completion, a list of `(last_char_index, reward)` steps.

    import reward_fns
    funcs, weights = reward_fns.preset("gsm8k")          # format + correctness
    trainer = GRPOTrainer(..., reward_funcs=funcs, args=GRPOConfig(reward_weights=weights, ...))
    reward_fns.get("gsm8k_correctness", exact=3.0)       # a configured copy
    reward_fns.get("soft_overlong", max_completion_len=512, soft_punish_cache=64)
    reward_fns.from_spec("length_penalty=0.5:max_length=200")  # (function, weight), as the CLI's --reward
"""

from .arith import ArithError, evaluate, find_claims
from .base import (
    ConstantRewardWarning,
    RewardFunction,
    RewardWarning,
    TextReward,
    text_reward,
    watch_constant,
)
from .generic import (
    LengthPenalty,
    MathEquivalence,
    length_penalty,
    make_length_penalty,
    make_math_equivalence,
    math_equivalence,
    soft_overlong,
)
from .gsm8k import (
    gsm8k_correctness,
    gsm8k_format,
    gsm8k_hash_format,
    gsm8k_integer,
    gsm8k_soft_format,
    gsm8k_strict_format,
    gsm8k_trailing_penalty,
    make_correctness_reward,
    make_format_reward,
    make_hash_format_reward,
    make_integer_reward,
    make_soft_format_reward,
    make_strict_format_reward,
    make_trailing_penalty,
    to_training_format,
)
from .parsing import completion_text, extract_answer, extract_gold, normalize_number, numbers_equal
from .process import ArithmeticSteps, arithmetic_steps, is_process_reward, make_arithmetic_steps, split_steps
from .registry import from_spec, get, load, names, preset, presets, register

__all__ = [
    "ArithError",
    "ArithmeticSteps",
    "ConstantRewardWarning",
    "LengthPenalty",
    "MathEquivalence",
    "RewardFunction",
    "RewardWarning",
    "TextReward",
    "arithmetic_steps",
    "completion_text",
    "evaluate",
    "extract_answer",
    "extract_gold",
    "find_claims",
    "from_spec",
    "get",
    "gsm8k_correctness",
    "gsm8k_format",
    "gsm8k_hash_format",
    "gsm8k_integer",
    "gsm8k_soft_format",
    "gsm8k_strict_format",
    "gsm8k_trailing_penalty",
    "is_process_reward",
    "length_penalty",
    "load",
    "make_arithmetic_steps",
    "make_correctness_reward",
    "make_format_reward",
    "make_hash_format_reward",
    "make_integer_reward",
    "make_length_penalty",
    "make_math_equivalence",
    "make_soft_format_reward",
    "make_strict_format_reward",
    "make_trailing_penalty",
    "math_equivalence",
    "names",
    "normalize_number",
    "numbers_equal",
    "preset",
    "presets",
    "register",
    "soft_overlong",
    "split_steps",
    "text_reward",
    "to_training_format",
    "watch_constant",
]
