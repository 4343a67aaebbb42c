"""ReMax, a preset of the engine (Li et al. 2023, https://huggingface.co/papers/2310.10505).

ReMax is REINFORCE with a greedy baseline: each sampled completion's advantage is `R[b, t] - r_greedy`, with `R`
the returns-to-go of the outcome at the last token (minus an optional per-token KL penalty) and `r_greedy` the
reward of the policy's greedy completion of the same prompt (estimator `remax`; the greedy rollout is
`trl_plus/engine/greedy_baseline.py`). The loss is TRL's: with `num_iterations=1` and on-policy data the importance
ratio is 1 and the gradient is plain REINFORCE; aggregation follows `loss_type`.

Minimum `num_generations` is 2: TRL's `GRPOConfig` rejects 1. The paper's setting is one sample per prompt; G=2 is
the closest TRL allows. `kl_coef`/`kl_estimator` are aliases of `kl_in_reward_coef`/`kl_in_reward_estimator`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from trl_plus.engine.config import PlusGRPOConfig, apply_alias, check_kl_aliases
from trl_plus.engine.trainer import PlusGRPOTrainer


@dataclass
class ReMaxConfig(PlusGRPOConfig):
    """`PlusGRPOConfig` with the `remax` estimator; `num_generations` must be >= 2."""

    advantage_estimator: str = field(default="remax", metadata={"help": "ReMax: 'remax' (greedy baseline)."})
    kl_coef: float | None = field(
        default=None,
        metadata={"help": "Alias of kl_in_reward_coef (default 0): the per-token KL penalty (policy vs reference) "
                          "subtracted from the reward; 0 disables it and no reference model is loaded."},
    )
    kl_estimator: str | None = field(
        default=None, metadata={"help": "Alias of kl_in_reward_estimator: 'k1' (default), 'k2', 'k3' or 'abs'."}
    )

    def __post_init__(self):
        if self.num_generations is not None and self.num_generations < 2:
            raise ValueError(
                f"ReMaxConfig got num_generations={self.num_generations}, but TRL's GRPOConfig needs at least 2 "
                "samples per prompt: set num_generations=2 (the closest to the paper's one sample per prompt)."
            )
        check_kl_aliases(self, ("kl_coef", "kl_estimator"))
        apply_alias(self, "kl_coef", "kl_in_reward_coef")
        apply_alias(self, "kl_estimator", "kl_in_reward_estimator")
        super().__post_init__()


class ReMaxTrainer(PlusGRPOTrainer):
    """ReMax: `A[b, t] = R[b, t] - r_greedy[prompt(b)]`, no whitening; same arguments as `trl.GRPOTrainer`.

    Logs `remax/greedy_reward` (mean reward of the greedy completions), `remax/advantage_mean` (mean advantage over
    the valid tokens of the batch) and, with `kl_coef > 0`, `remax/kl_reward` (mean per-token KL estimate of the
    penalty).
    """

    _tag_names: ClassVar[list[str]] = ["trl", "trl-plus", "remax"]
    config_class = ReMaxConfig
