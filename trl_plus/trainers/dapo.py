"""DAPO, a preset of the engine (Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System at Scale",
https://huggingface.co/papers/2503.14476).

DAPO's four parts, each switchable and each also available with every other estimator:
1. Clip-higher: `epsilon=0.2`, `epsilon_high=0.28` (TRL's own fields, DAPO defaults here).
2. Dynamic sampling (`dynamic_sampling=True`, `trl_plus/engine/dynamic_sampling.py`).
3. Token-level loss: TRL's `loss_type="dapo"`.
4. Overlong reward shaping (`overlong_buffer_len`, `trl_plus/engine/overlong.py`); overlong *filtering* is TRL's
   `mask_truncated_completions=True`.
No KL (`beta=0`). The advantages are TRL's GRPO advantages (estimator `grpo`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from trl_plus.engine.config import PlusGRPOConfig
from trl_plus.engine.trainer import STATE_FILE, PlusGRPOTrainer  # noqa: F401 - STATE_FILE re-exported


@dataclass
class DAPOConfig(PlusGRPOConfig):
    """`PlusGRPOConfig` with DAPO's defaults: clip-higher, token-level loss, no KL, dynamic sampling on."""

    epsilon: float = field(default=0.2, metadata={"help": "Lower clipping epsilon of the PPO ratio (DAPO: 0.2)."})
    epsilon_high: float | None = field(default=0.28, metadata={"help": "Upper clipping epsilon (clip-higher; "
                                                                       "DAPO: 0.28). Must be >= epsilon."})
    loss_type: str = field(default="dapo", metadata={"help": "Loss aggregation; 'dapo' is the paper's token-level "
                                                             "loss."})
    beta: float = field(default=0.0, metadata={"help": "KL coefficient; DAPO uses no KL term (0)."})
    dynamic_sampling: bool = field(
        default=True,
        metadata={"help": "Drop groups whose filter metric has zero spread and draw new prompts until the batch is "
                          "full again (training only)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.epsilon_high is not None and self.epsilon_high < self.epsilon:
            raise ValueError(f"epsilon_high ({self.epsilon_high}) must be >= epsilon ({self.epsilon}): clip-higher "
                             "widens the upper clip range. Raise epsilon_high (DAPO: 0.28) or lower epsilon "
                             "(DAPO: 0.2).")


class DAPOTrainer(PlusGRPOTrainer):
    """DAPO (https://huggingface.co/papers/2503.14476); same arguments as `trl.GRPOTrainer`.

    Logs per generation: `dapo/gen_rounds`, `dapo/groups_generated`, `dapo/groups_kept` and `dapo/groups_filled`
    (global counts). The prompt-drawing RNG is saved in every checkpoint (`trl_plus_state.pt`) and restored on resume.
    """

    _tag_names: ClassVar[list[str]] = ["trl", "trl-plus", "dapo"]
    config_class = DAPOConfig
