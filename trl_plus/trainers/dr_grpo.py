"""Dr. GRPO, a preset of the engine (Liu et al. 2025, https://huggingface.co/papers/2503.20783).

Dr. GRPO removes GRPO's two length and difficulty biases: the advantage is `r - mean_group(r)` without dividing by
the group std (estimator `dr_grpo`, with TRL's `scale_rewards="none"` so TRL's logs agree), and the loss is summed
over tokens and divided by a constant `B * max_completion_length` (TRL's `loss_type="dr_grpo"`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from trl_plus.engine.config import PlusGRPOConfig
from trl_plus.engine.trainer import PlusGRPOTrainer


@dataclass
class DrGRPOConfig(PlusGRPOConfig):
    """`PlusGRPOConfig` with Dr. GRPO's settings as defaults, and errors for contradicting values."""

    advantage_estimator: str = field(default="dr_grpo", metadata={"help": "Dr. GRPO: 'dr_grpo' (r - group mean)."})
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
                "the std: leave scale_rewards='none', or use trl_plus.PlusGRPOConfig for scaled rewards."
            )
        if self.loss_type != "dr_grpo":
            raise ValueError(
                f"DrGRPOConfig got loss_type={self.loss_type!r}, but Dr. GRPO normalises the loss by a constant: "
                "leave loss_type='dr_grpo', or use trl_plus.PlusGRPOConfig for other loss types."
            )


class DrGRPOTrainer(PlusGRPOTrainer):
    """The engine run with a `DrGRPOConfig` (same arguments as `GRPOTrainer`)."""

    _tag_names: ClassVar[list[str]] = ["trl", "trl-plus", "dr-grpo"]
    config_class = DrGRPOConfig
