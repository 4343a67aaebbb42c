"""trl-plus: trainers that TRL lacks or does differently, as thin subclasses of TRL 1.16.

Trainer and config classes are imported lazily, so `trl-plus --help` and the pure
functional core do not pay for importing TRL.
"""

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
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
