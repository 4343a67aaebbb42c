"""REINFORCE++ and REINFORCE++-baseline on TRL's GRPOTrainer.

REINFORCE++ (Hu 2025, https://huggingface.co/papers/2501.03262) is PPO without a critic: the
outcome reward sits at the last token, a per-token KL penalty against the reference model is
part of the *reward*, and the returns-to-go are whitened over the global batch. The loss is
TRL's PPO-clip loss, fed (B, T) advantages through the `compute_advantages` seam.

Overrides:
- `compute_advantages`: token rewards, returns and global whitening from `trl_plus.core`.
- `_compute_loss`: only when a KL term in the *loss* uses an estimator other than TRL's k3
  (REINFORCE++-baseline's recommended k2). TRL hard-codes k3 there, so the loss runs with
  `beta = 0` and the chosen KL is added from the log-probs TRL's own forward produced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from trl import GRPOConfig

from trl_plus.core import KL_ESTIMATORS, dr_grpo_advantages, kl_penalty, reinforce_pp_advantages, token_level_rewards
from trl_plus.engine.kl_loss import loss_with_kl
from trl_plus.trainers.base import PlusGRPOTrainer


@dataclass
class ReinforcePlusPlusConfig(GRPOConfig):
    """Configuration of `ReinforcePlusPlusTrainer`: `GRPOConfig` plus the REINFORCE++ fields.

    Defaults follow OpenRLHF and the paper: `kl_coef=0.01` with the k1 estimator in the reward,
    `gamma=1`, `reward_clip=10`, PPO clip 0.2 and no KL in the loss (`beta=0`).
    """

    kl_coef: float = field(
        default=0.01,
        metadata={"help": "Coefficient of the per-token KL penalty added to the reward (0 disables it and the "
                          "reference model)."},
    )
    kl_estimator: str = field(
        default="k1",
        metadata={"help": "KL estimator in the reward: 'k1', 'k2', 'k3' or 'abs' (Schulman 2020)."},
    )
    gamma: float = field(default=1.0, metadata={"help": "Discount of the returns-to-go, in [0, 1]."})
    reward_clip: float | None = field(
        default=10.0, metadata={"help": "Clip outcome rewards to [-reward_clip, reward_clip]; None disables it."}
    )
    baseline: bool = field(
        default=False,
        metadata={"help": "REINFORCE++-baseline: subtract the group mean reward from the outcome first "
                          "(needs num_generations > 1)."},
    )
    loss_kl_estimator: str = field(
        default="k3",
        metadata={"help": "KL estimator of the KL term in the loss, used when beta > 0. The authors recommend "
                          "'k2' with baseline=True."},
    )

    def __post_init__(self):
        super().__post_init__()
        for name in ("kl_estimator", "loss_kl_estimator"):
            if getattr(self, name) not in KL_ESTIMATORS:
                raise ValueError(f"{name}={getattr(self, name)!r} is not a KL estimator: use one of {KL_ESTIMATORS}.")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0 (got {self.kl_coef}); use 0 to switch the KL reward off.")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1] (got {self.gamma}); REINFORCE++ uses gamma=1.")
        if self.reward_clip is not None and self.reward_clip <= 0:
            raise ValueError(f"reward_clip must be > 0 or None (got {self.reward_clip}).")


class ReinforcePlusPlusTrainer(PlusGRPOTrainer):
    """REINFORCE++ (`baseline=False`) and REINFORCE++-baseline (`baseline=True`).

    Takes the same arguments as `trl.GRPOTrainer`. Advantages are (B, T):
    `white(R)` with `R` the returns-to-go of `clip(r)` at the last token minus `kl_coef * KL`
    on every token, whitened over the batch of all processes
    (https://huggingface.co/papers/2501.03262). With `baseline=True` the outcome is
    `r - mean_group(r)` instead of `clip(r)`.

    The reference model is built when `kl_coef > 0` even though `beta = 0` (see `base.py`).
    """

    _tag_names: ClassVar[list[str]] = ["trl", "trl-plus", "reinforce++"]
    config_class = ReinforcePlusPlusConfig

    def compute_advantages(self, out):
        mask = self.loss_mask(out)
        rewards = self.total_rewards()  # (N,) all processes
        if self.args.reward_clip is not None:
            rewards = rewards.clamp(-self.args.reward_clip, self.args.reward_clip)
        if self.args.baseline:
            outcome = dr_grpo_advantages(rewards, self.group_ids(len(rewards)))
        else:
            outcome = rewards
        local = self.local_rows(mask.size(0))
        outcome = outcome[local]
        # Unscorable rows carry no signal: out of the whitening statistics, advantage 0.
        scored = mask.bool() & ~torch.isnan(rewards[local])[:, None]

        kl = None
        if self.args.kl_coef > 0:
            logp_old, logp_ref = self.rollout_logps(out)
            kl = kl_penalty(logp_old, logp_ref, self.args.kl_estimator)
            n_tokens = self.reduce_sum(scored.sum().float()).clamp(min=1)
            self.log_metric("reinforce_pp/kl_reward", self.reduce_sum((kl * scored).sum()) / n_tokens)
        token_rewards = token_level_rewards(outcome, scored, kl=kl, kl_coef=self.args.kl_coef)
        advantages = reinforce_pp_advantages(token_rewards, scored, self.args.gamma, reducer=self.reduce_sum)
        n_rows = self.reduce_sum(torch.tensor(float(len(outcome)), device=outcome.device))
        self.log_metric("reinforce_pp/outcome_mean", self.reduce_sum(torch.nan_to_num(outcome).sum()) / n_rows)
        return advantages

    def _compute_loss(self, model, inputs):
        if self.beta == 0.0 or self.args.loss_kl_estimator == "k3":
            return super()._compute_loss(model, inputs)
        return loss_with_kl(self, super()._compute_loss, model, inputs, self.args.loss_kl_estimator)
