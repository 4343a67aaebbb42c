"""Process-supervised GRPO, a preset of the engine (Shao et al. 2024, DeepSeekMath, section 4.1.3,
https://huggingface.co/papers/2402.03300).

Each completion gets step rewards from process reward functions (one list of `(last_char_offset, reward)` per
completion, the contract of `reward_fns.process`). Step rewards are normalised over all steps of all completions of
the group (the outcome step, with `outcome_weight > 0`, apart from the text steps), and token `t` gets the sum of the
normalised rewards of the steps ending at or after `t` (estimator
`process`; the adapters that bring the steps through TRL are in `trl_plus/engine/process_rewards.py`, the offset to
token mapping in `trl_plus/engine/step_offsets.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from trl_plus.engine.config import PlusGRPOConfig
from trl_plus.engine.process_rewards import ProcessRewardAdapter  # noqa: F401 - re-exported
from trl_plus.engine.trainer import PlusGRPOTrainer


@dataclass
class ProcessGRPOConfig(PlusGRPOConfig):
    """`PlusGRPOConfig` with the `process` estimator; `outcome_weight` and `process_reward_weights` mix the rewards."""

    advantage_estimator: str = field(default="process", metadata={"help": "Process-supervised GRPO: 'process'."})


class ProcessGRPOTrainer(PlusGRPOTrainer):
    """Process-supervised GRPO (DeepSeekMath section 4.1.3, https://huggingface.co/papers/2402.03300).

    Takes the same arguments as `trl.GRPOTrainer`, plus the keyword `process_reward_funcs`: callables or
    `reward_fns` registry names following the process reward contract. Process functions passed in `reward_funcs`
    (those with `process_reward = True`) are moved there too, weighted by their `reward_weights` entry; the rest of
    `reward_funcs` are outcome rewards, whose weighted total enters, times `outcome_weight`, as one extra step at the
    last completion token. Logged: `process/steps_per_completion`, `process/step_reward_mean`,
    `rewards/<process fn>/mean`; `frac_reward_zero_std` is re-logged as the fraction of groups whose advantages are
    all 0, and, without outcome functions, `reward`/`reward_std` as the per-completion mean step reward. Tool calling
    and response parsing (completion text not equal to the decoded completion) are not supported.
    """

    _tag_names: ClassVar[list[str]] = ["trl", "trl-plus", "process-grpo"]
    config_class = ProcessGRPOConfig

    def __init__(self, model, reward_funcs=None, args=None, *more, process_reward_funcs=None, **kwargs):
        super().__init__(model, reward_funcs, args, *more, process_reward_funcs=process_reward_funcs, **kwargs)
