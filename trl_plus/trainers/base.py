"""Compatibility module: the seam between trl-plus and TRL's `GRPOTrainer` is now the engine
(`trl_plus/engine/trainer.py`); these names stay importable from here."""

from trl_plus.engine.trainer import STATE_FILE, PlusGRPOTrainer, Scored

__all__ = ["STATE_FILE", "PlusGRPOTrainer", "Scored"]
