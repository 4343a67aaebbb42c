"""Moved to `trl_plus.engine.training_checks` (checks of a training setup); kept importable for the command line."""

from trl_plus.engine.training_checks import check_config, check_trainer, checked_reward, warn_if_past_context

__all__ = ["check_config", "check_trainer", "checked_reward", "warn_if_past_context"]
