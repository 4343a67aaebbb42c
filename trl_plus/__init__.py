"""trl-plus: one GRPO-family engine on TRL 1.16 whose parts compose, and the named algorithms as its presets.

Trainer and config classes are imported lazily, so `trl-plus --help` and the pure
functional core do not pay for importing TRL.
"""

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "PlusGRPOConfig": "trl_plus.engine.config",
    "PlusGRPOTrainer": "trl_plus.engine.trainer",
    "register_estimator": "trl_plus.engine.estimators",
    "EstimatorContext": "trl_plus.engine.estimators",
    "ReinforcePlusPlusConfig": "trl_plus.trainers.reinforce_pp",
    "ReinforcePlusPlusTrainer": "trl_plus.trainers.reinforce_pp",
    "ReMaxConfig": "trl_plus.trainers.remax",
    "ReMaxTrainer": "trl_plus.trainers.remax",
    "RAHFConfig": "trl_plus.trainers.rahf",
    "RAHFTrainer": "trl_plus.trainers.rahf",
    "RAFTConfig": "trl_plus.trainers.rahf",
    "RAFTTrainer": "trl_plus.trainers.rahf",
    "DAPOConfig": "trl_plus.trainers.dapo",
    "DAPOTrainer": "trl_plus.trainers.dapo",
    "DrGRPOConfig": "trl_plus.trainers.dr_grpo",
    "DrGRPOTrainer": "trl_plus.trainers.dr_grpo",
    "ProcessGRPOConfig": "trl_plus.trainers.process_grpo",
    "ProcessGRPOTrainer": "trl_plus.trainers.process_grpo",
    # listwise preferences (Plackett-Luce)
    "PlackettLuceRewardConfig": "trl_plus.trainers.pl_reward",
    "PlackettLuceRewardTrainer": "trl_plus.trainers.pl_reward",
    "ListwiseDPOConfig": "trl_plus.trainers.listwise_dpo",
    "ListwiseDPOTrainer": "trl_plus.trainers.listwise_dpo",
    "build_listwise_dataset": "trl_plus.listwise_data",
    "PPOConfig": "trl_plus.trainers.ppo",
    "PPOTrainer": "trl_plus.trainers.ppo",
    "save_tiny_model": "trl_plus.tiny",
    "build_tiny_model": "trl_plus.tiny",
    "generate_problems": "trl_plus.data",
    "load_rows": "trl_plus.data",
    "to_prompt_dataset": "trl_plus.data",
    "SYSTEM_PROMPT": "trl_plus.data",
}

__all__ = [*sorted(_LAZY)]  # noqa: PLE0604 - names are resolved lazily below


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trl_plus' has no attribute {name!r}")
