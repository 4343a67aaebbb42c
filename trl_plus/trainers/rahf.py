"""RAHF: reward-ranked fine-tuning (the RAFT method of Dong et al. 2023, https://huggingface.co/papers/2304.06767),
a preset of the engine.

Online loop on the trainer's own generation: every prompt is sampled `K = num_generations` times, the reward
functions score the samples, the best are kept (estimator `raft`) and the policy is trained on the kept completions
with the negative log-likelihood at temperature 1 (`trl_plus/engine/best_of_k.py`, which documents the selection
rules: `selection`, `keep_fraction`, `min_reward`, ties, unscorable completions). Nothing is trained on the rejected
samples, and there is no reference model. GRPO loss options (`loss_type`, `epsilon*`, importance sampling, entropy
masks or bonus) do not apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from trl_plus.engine.best_of_k import model_logps  # noqa: F401 - part of this preset's public helpers
from trl_plus.engine.config import PlusGRPOConfig
from trl_plus.engine.trainer import PlusGRPOTrainer


@dataclass
class RAHFConfig(PlusGRPOConfig):
    """`PlusGRPOConfig` with the `raft` estimator (best-of-K + NLL). `num_generations` is K."""

    advantage_estimator: str = field(default="raft", metadata={"help": "RAHF/RAFT: 'raft' (best-of-K + NLL)."})

    def __post_init__(self):
        if self.beta != 0.0:
            raise ValueError(f"RAHFConfig got beta={self.beta}, but RAHF trains with the SFT loss and has no "
                             "reference model or KL term: set beta=0.0.")
        super().__post_init__()


class RAHFTrainer(PlusGRPOTrainer):
    """Reward-ranked fine-tuning (RAFT): sample K completions per prompt, keep the best, train on them with the NLL.

    Takes the same arguments as `trl.GRPOTrainer`. Logs `rahf/kept_fraction`, `rahf/reward_kept_mean`,
    `rahf/reward_all_mean`; the logged `loss` is the mean NLL per kept token.
    """

    _tag_names: ClassVar[list[str]] = ["trl", "trl-plus", "rahf", "raft"]
    config_class = RAHFConfig


# The method's name in the paper (Dong et al. 2023): RAFT.
RAFTConfig = RAHFConfig
RAFTTrainer = RAHFTrainer
