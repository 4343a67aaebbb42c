"""The trl-plus engine: one GRPO-family trainer whose parts compose (guide: `docs/compose.md`).

- `trainer.py`: `PlusGRPOTrainer`, the seam with TRL's `GRPOTrainer`; read it top to bottom.
- `config.py`: `PlusGRPOConfig` and the config-time checks of incompatible choices.
- `estimators.py`: the advantage-estimator registry, `register_estimator` and `EstimatorContext`.
- One module per part that needs more than a hook: `dynamic_sampling.py` (with `rollout_batches.py`, which joins
  rollout rounds), `greedy_baseline.py` (ReMax), `best_of_k.py` (RAFT), `process_rewards.py` (with
  `step_offsets.py`, which maps step character offsets to tokens), `overlong.py`, `kl_loss.py`.
- `training_checks.py`: checks of a training setup; `machine.py`: bf16/use_cpu defaults and the launch check.

The math is in `trl_plus.core` (pure functions); the named algorithms are presets in `trl_plus.trainers`.
"""
