"""REINFORCE++ and REINFORCE++-baseline, presets of the engine (Hu 2025, https://huggingface.co/papers/2501.03262).

REINFORCE++ is PPO without a critic: the outcome reward sits at the last token, a per-token KL penalty against the
reference model is part of the *reward*, and the returns-to-go are whitened over the global batch (estimators
`reinforce_pp` and `reinforce_pp_baseline` in `trl_plus/engine/estimators.py`). The loss is TRL's PPO-clip loss;
a KL term in the loss (`beta > 0`) may use another estimator than TRL's k3 (`loss_kl_estimator`, e.g. the k2 the
authors recommend with the baseline), aggregated like the loss.

The preset keeps its field names as aliases of the engine's: `kl_coef` = `kl_in_reward_coef`, `kl_estimator` =
`kl_in_reward_estimator`, `loss_kl_estimator` = `kl_in_loss_estimator`, `baseline=True` =
`advantage_estimator="reinforce_pp_baseline"`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from trl_plus.engine.config import PlusGRPOConfig, apply_alias, check_kl_aliases
from trl_plus.engine.trainer import PlusGRPOTrainer

ESTIMATORS = ("reinforce_pp", "reinforce_pp_baseline")


@dataclass
class ReinforcePlusPlusConfig(PlusGRPOConfig):
    """`PlusGRPOConfig` with REINFORCE++'s defaults (OpenRLHF and the paper): KL coefficient 0.01 with the k1
    estimator in the reward, `gamma=1`, `reward_clip=10`, PPO clip 0.2 and no KL in the loss (`beta=0`)."""

    advantage_estimator: str = field(default="reinforce_pp", metadata={"help": "'reinforce_pp' or "
                                                                              "'reinforce_pp_baseline'."})
    kl_in_reward_coef: float = field(default=0.01, metadata={"help": "Coefficient of the per-token KL penalty in "
                                                                     "the reward (alias: kl_coef)."})
    reward_clip: float | None = field(
        default=10.0, metadata={"help": "Clip outcome rewards to [-reward_clip, reward_clip]; None disables it."}
    )
    kl_coef: float | None = field(
        default=None,
        metadata={"help": "Alias of kl_in_reward_coef (default 0.01): the per-token KL penalty added to the reward; "
                          "0 disables it and the reference model."},
    )
    kl_estimator: str | None = field(
        default=None, metadata={"help": "Alias of kl_in_reward_estimator: 'k1' (default), 'k2', 'k3' or 'abs'."}
    )
    loss_kl_estimator: str | None = field(
        default=None,
        metadata={"help": "Alias of kl_in_loss_estimator: the KL estimator of the KL term in the loss, used when "
                          "beta > 0 (default 'k3'). The authors recommend 'k2' with baseline=True."},
    )
    baseline: bool = field(
        default=False,
        metadata={"help": "REINFORCE++-baseline (= advantage_estimator='reinforce_pp_baseline'): subtract the group "
                          "mean reward from the outcome first (needs num_generations > 1)."},
    )

    def __post_init__(self):
        check_kl_aliases(self, ("kl_coef", "kl_estimator", "loss_kl_estimator"))
        apply_alias(self, "kl_coef", "kl_in_reward_coef")
        apply_alias(self, "kl_estimator", "kl_in_reward_estimator")
        apply_alias(self, "loss_kl_estimator", "kl_in_loss_estimator")
        if self.baseline:
            self.advantage_estimator = "reinforce_pp_baseline"
        self.baseline = self.advantage_estimator == "reinforce_pp_baseline"
        if self.advantage_estimator not in ESTIMATORS:
            raise ValueError(f"ReinforcePlusPlusConfig got advantage_estimator={self.advantage_estimator!r}: use one "
                             f"of {ESTIMATORS}, or trl_plus.PlusGRPOConfig for other estimators.")
        super().__post_init__()


class ReinforcePlusPlusTrainer(PlusGRPOTrainer):
    """REINFORCE++ (`baseline=False`) and REINFORCE++-baseline (`baseline=True`); same arguments as `GRPOTrainer`.

    Advantages are (B, T): `white(R)` with `R` the returns-to-go of `clip(r)` at the last token minus `kl_coef * KL`
    on every token, whitened over the batch of all processes. With `baseline=True` the outcome is
    `r - mean_group(r)` instead of `clip(r)`. The reference model is built when `kl_coef > 0` even though `beta = 0`.
    """

    _tag_names: ClassVar[list[str]] = ["trl", "trl-plus", "reinforce++"]
    config_class = ReinforcePlusPlusConfig
