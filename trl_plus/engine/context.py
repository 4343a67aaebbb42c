"""The `EstimatorContext` a `PlusGRPOTrainer` hands its advantage estimator: rewards, groups and mask for every
estimator, plus what the estimator asked for (rollout and reference log-probs, the KL penalty of the reward, the
greedy baseline, the step rewards)."""

from __future__ import annotations

from typing import Any

import torch

from trl_plus.core import kl_penalty
from trl_plus.engine.config import setting
from trl_plus.engine.estimators import EstimatorContext


def build_context(trainer, out: dict[str, Any]) -> EstimatorContext:
    """Everything `trainer.estimator` asked for, for the batch in `out` (see `EstimatorContext`)."""
    mask = trainer.loss_mask(out)
    n_local = mask.size(0)
    rewards = trainer.total_rewards()
    clip = setting(trainer.args, "reward_clip")
    if clip is not None:
        rewards = rewards.clamp(-clip, clip)
    n = len(rewards)
    ctx = EstimatorContext(
        rewards=rewards, rewards_per_func=trainer._scored.rewards_per_func, reward_func_names=trainer.reward_func_names,
        group_ids=trainer.group_ids(n), local=trainer.local_rows(n_local), mask=mask, reducer=trainer.reduce_sum,
        gather=trainer.accelerator.gather, log=trainer.log_metric, args=trainer.args, trainer=trainer,
        kl_coef=setting(trainer.args, "kl_in_reward_coef"),
    )
    if ctx.kl_coef > 0 or trainer.estimator.needs_reference_logps:
        ctx.logps, ctx.ref_logps = rollout_logps(trainer, out)
    if ctx.kl_coef > 0:
        ctx.kl = kl_penalty(ctx.logps, ctx.ref_logps, setting(trainer.args, "kl_in_reward_estimator"))
        valid = ctx.scored_mask()
        totals = trainer.reduce_sum(torch.stack([torch.where(valid, ctx.kl, 0.0).sum(), valid.sum().to(ctx.kl.dtype)]))
        family = trainer.estimator.name.removesuffix("_baseline")  # e.g. reinforce_pp/kl_reward, remax/kl_reward
        trainer.log_metric(f"{family}/kl_reward", (totals[0] / totals[1].clamp(min=1)).item())
    if trainer.estimator.needs_greedy_baseline:
        _, per_group = trainer.greedy_baseline(n_local)
        greedy = per_group[ctx.group_ids]
        ctx.greedy_rewards = greedy if clip is None else greedy.clamp(-clip, clip)
    if trainer.estimator.needs_step_rewards:
        rows = trainer._gather_rows(trainer._local_step_rows())
        ctx.step_token_ends, ctx.step_rewards = [r[0] for r in rows], [r[1] for r in rows]
        ctx.completion_lengths = torch.tensor([r[2] for r in rows], device=mask.device)
        ctx.group_ids = trainer.group_ids(len(rows))  # the gathered step rows (N of them)
    return ctx


def rollout_logps(trainer, out: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs of the sampled tokens under the rollout policy and the reference, (B, T).

    TRL skips the rollout policy's pass when training is on-policy (the loss then reuses its own forward), so it is
    computed here with TRL's helper when missing.
    """
    old = out.get("old_per_token_logps")
    if old is None:
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        with torch.no_grad():
            old, _, _ = trainer._get_per_token_logps_and_entropies(
                trainer.model, ids, mask, out["completion_ids"].size(1), batch_size=trainer.forward_batch_size)
    return old, out.get("ref_per_token_logps")
