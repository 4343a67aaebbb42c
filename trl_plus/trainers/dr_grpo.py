"""Dr. GRPO as a preset of TRL's own flags (Liu et al. 2025, https://huggingface.co/papers/2503.20783).

Dr. GRPO removes GRPO's two length and difficulty biases: the advantage is `r - mean_group(r)`
without dividing by the group std, and the loss is summed over tokens and divided by a constant
(`B * max_completion_length`). TRL 1.16 already implements both (`scale_rewards="none"`,
`loss_type="dr_grpo"`), so this is a validated preset, not a re-implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from trl import GRPOConfig

from trl_plus.trainers.base import PlusGRPOTrainer


@dataclass
class DrGRPOConfig(GRPOConfig):
    """`GRPOConfig` with Dr. GRPO's settings as defaults, and errors for contradicting values."""

    scale_rewards: str = field(
        default="none",
        metadata={"help": "Must be 'none' for Dr. GRPO: advantages are not divided by the group std."},
    )
    loss_type: str = field(
        default="dr_grpo",
        metadata={"help": "Must be 'dr_grpo': token sums divided by the constant B * max_completion_length."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.scale_rewards != "none":
            raise ValueError(
                f"DrGRPOConfig got scale_rewards={self.scale_rewards!r}, but Dr. GRPO does not scale advantages by "
                "the std: leave scale_rewards='none', or use trl.GRPOConfig for scaled rewards."
            )
        if self.loss_type != "dr_grpo":
            raise ValueError(
                f"DrGRPOConfig got loss_type={self.loss_type!r}, but Dr. GRPO normalises the loss by a constant: "
                "leave loss_type='dr_grpo', or use trl.GRPOConfig for other loss types."
            )


class DrGRPOTrainer(PlusGRPOTrainer):
    """`trl.GRPOTrainer` run with a `DrGRPOConfig` (same arguments as `GRPOTrainer`). The advantages are TRL's own
    (`compute_advantages` is not overridden); `PlusGRPOTrainer` adds only the shared input checks."""

    _tag_names: ClassVar[list[str]] = ["trl", "trl-plus", "dr-grpo"]
    config_class = DrGRPOConfig
