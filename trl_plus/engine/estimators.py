"""The advantage-estimator registry the engine dispatches on, its context object, and the built-in estimators.

An estimator is a function `fn(ctx: EstimatorContext) -> Tensor | None` registered under a name with
`register_estimator`. It returns this process's advantages, shape (B,) (one per completion) or (B, T) (one per
completion token), or None to keep TRL's GRPO advantages. The math lives in `trl_plus.core`; the functions here
only pick the core function and its inputs. See `docs/compose.md` for a custom estimator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from trl_plus import core

LOSSES = ("policy_gradient", "nll")


@dataclass(frozen=True)
class Estimator:
    """A registered estimator and what the trainer must prepare for it."""

    name: str
    fn: Callable[[EstimatorContext], Tensor | None]
    needs_reference_logps: bool = False  # build the reference model and pass ctx.logps / ctx.ref_logps
    needs_greedy_baseline: bool = False  # decode one greedy completion per prompt: ctx.greedy_rewards
    needs_step_rewards: bool = False  # the trainer takes process_reward_funcs: ctx.step_rewards / step_token_ends
    uses_gamma: bool = False  # the estimator computes discounted returns (otherwise gamma must stay 1)
    needs_critic: bool = False  # only a trainer that trains a critic (PPOTrainer): ctx.values in, ctx.returns out
    loss: str = "policy_gradient"  # TRL's loss, or "nll": SFT on the rows with advantage 1 (best-of-K)


ESTIMATORS: dict[str, Estimator] = {}


def register_estimator(name: str, *, needs_reference_logps: bool = False, needs_greedy_baseline: bool = False,
                       needs_step_rewards: bool = False, uses_gamma: bool = False, needs_critic: bool = False,
                       loss: str = "policy_gradient", replace: bool = False):
    """Decorator: add `fn(ctx) -> advantages` to the registry under `name`, for `advantage_estimator=name`.

    Register before building the config that names it. `needs_reference_logps=True` makes the trainer build the
    reference model and fill `ctx.logps`/`ctx.ref_logps`; `needs_greedy_baseline=True` fills `ctx.greedy_rewards`;
    `needs_step_rewards=True` makes the trainer take `process_reward_funcs` and fill the step fields; `uses_gamma`
    allows `gamma != 1`; `needs_critic=True` restricts the estimator to a trainer with a critic (`PPOTrainer`),
    which fills `ctx.values` and trains the critic towards the `ctx.returns` the estimator sets; `loss="nll"` trains the rows whose advantage is 1 with the negative log-likelihood.
    A name already taken raises unless `replace=True`.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is unknown: use one of {LOSSES}.")

    def decorate(fn):
        if name in ESTIMATORS and not replace:
            raise ValueError(f"An advantage estimator named {name!r} is already registered: pick another name, or "
                             "pass replace=True to replace it.")
        ESTIMATORS[name] = Estimator(name, fn, needs_reference_logps, needs_greedy_baseline, needs_step_rewards,
                                     uses_gamma, needs_critic, loss)
        return fn

    return decorate


def get_estimator(name: str) -> Estimator:
    """The registered estimator `name`; ValueError naming the valid ones."""
    if name not in ESTIMATORS:
        import difflib

        close = difflib.get_close_matches(str(name), ESTIMATORS, n=2)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"Unknown advantage_estimator {name!r}.{hint} Registered: {', '.join(sorted(ESTIMATORS))}; "
                         "add one with trl_plus.register_estimator.")
    return ESTIMATORS[name]


@dataclass
class EstimatorContext:
    """Everything an estimator may use for one generation batch. `N` rows over all processes, `B` on this one.

    Gathered (all processes, in TRL's order): `rewards`, `rewards_per_func`, `group_ids`, `greedy_rewards`,
    step fields. This process's: `mask`, `kl`, `logps`, `ref_logps`, `values`; `local` selects its rows of the
    gathered ones. An estimator with `needs_critic` sets `returns`, the critic's targets.
    """

    rewards: Tensor  # (N,) weighted total reward (reward_clip applied); NaN: every reward function abstained
    rewards_per_func: Tensor  # (N, F) raw reward of each function; NaN where it abstained
    reward_func_names: list[str]
    group_ids: Tensor  # (N,) prompt (group) of each row; a group's G rows are side by side
    local: slice  # this process's rows of the N
    mask: Tensor  # (B, T) this process's loss mask (completion mask, tool tokens excluded)
    reducer: Callable[[Tensor], Tensor]  # sum of a tensor over processes (whitening statistics)
    gather: Callable[[Tensor], Tensor]  # concatenation of a (B, ...) tensor over processes -> (N, ...)
    log: Callable[[str, float], None]  # log a metric under this name
    args: Any  # the trainer's config
    kl_coef: float = 0.0  # kl_in_reward_coef
    kl: Tensor | None = None  # (B, T) per-token KL estimate for the reward (kl_in_reward_estimator), or None
    logps: Tensor | None = None  # (B, T) rollout-policy log-probs of the sampled tokens (when asked for)
    ref_logps: Tensor | None = None  # (B, T) reference log-probs (when asked for)
    greedy_rewards: Tensor | None = None  # (N,) reward of the greedy completion of each row's prompt
    step_rewards: list | None = None  # N lists of step rewards (None: unscorable step)
    step_token_ends: list | None = None  # N lists of the token index where each step ends
    completion_lengths: Tensor | None = None  # (N,) completion lengths in tokens (with step rewards)
    values: Tensor | None = None  # (B, T) the critic's values V_old of the rollout tokens (needs_critic)
    returns: Tensor | None = None  # (B, T) set by a needs_critic estimator: the critic's regression targets
    trainer: Any = None  # the trainer, for estimators that log TRL's own metrics (advanced use)

    @property
    def local_rewards(self) -> Tensor:
        """(B,) this process's rewards."""
        return self.rewards[self.local]

    def scored_mask(self) -> Tensor:
        """(B, T) the loss mask without the rows whose reward is NaN (unscorable rows carry no signal)."""
        return self.mask.bool() & ~torch.isnan(self.local_rewards)[:, None]

    def token_rewards(self, outcome: Tensor | None = None) -> Tensor:
        """(B, T) token rewards: `outcome` (default this process's rewards) at the last valid token and
        `-kl_coef * kl` on every valid token (`core.token_level_rewards`)."""
        outcome = self.local_rewards if outcome is None else outcome
        return core.token_level_rewards(outcome, self.scored_mask(), kl=self.kl, kl_coef=self.kl_coef)

    def sequence_rewards(self) -> Tensor:
        """(N,) the reward of each completion with the KL penalty of the reward summed over its tokens:
        `r - kl_coef * sum_t kl_t` (the sum of `token_rewards`, as verl feeds GRPO)."""
        if self.kl is None or self.kl_coef == 0.0:
            return self.rewards
        kl_sum = torch.where(self.mask.bool(), self.kl, 0.0).sum(1)
        return self.rewards - self.kl_coef * self.gather(kl_sum).to(self.rewards.dtype)


# ----- built-in estimators --------------------------------------------------------------------------------------
# TRL's GRPO uses eps = 1e-4 in (r - mean) / (std + eps); recomputed GRPO advantages use the same.
TRL_STD_EPS = 1e-4


@register_estimator("grpo")
def grpo(ctx: EstimatorContext) -> Tensor | None:
    """TRL's own GRPO advantages; recomputed by `core.grpo_advantages` only when the reward changed (KL in the
    reward, reward_clip)."""
    if (ctx.kl is None or ctx.kl_coef == 0.0) and ctx.args.reward_clip is None:
        return None
    scale = ctx.args.scale_rewards != "none"
    return core.grpo_advantages(ctx.sequence_rewards(), ctx.group_ids, scale=scale, eps=TRL_STD_EPS)[ctx.local]


@register_estimator("dr_grpo")
def dr_grpo(ctx: EstimatorContext) -> Tensor:
    """`r - mean_group(r)` (Dr. GRPO, https://huggingface.co/papers/2503.20783)."""
    return core.dr_grpo_advantages(ctx.sequence_rewards(), ctx.group_ids)[ctx.local]


@register_estimator("rloo")
def rloo(ctx: EstimatorContext) -> Tensor:
    """Leave-one-out baseline (RLOO, https://huggingface.co/papers/2402.14740)."""
    return core.rloo_advantages(ctx.sequence_rewards(), ctx.group_ids)[ctx.local]


def _log_outcome(ctx: EstimatorContext, outcome: Tensor) -> None:
    n_rows = ctx.reducer(torch.tensor(float(len(outcome)), device=outcome.device))
    ctx.log("reinforce_pp/outcome_mean", (ctx.reducer(torch.nan_to_num(outcome).sum()) / n_rows).item())


@register_estimator("reinforce_pp", uses_gamma=True)
def reinforce_pp(ctx: EstimatorContext) -> Tensor:
    """Returns-to-go of the token rewards, whitened over all processes (REINFORCE++,
    https://huggingface.co/papers/2501.03262)."""
    _log_outcome(ctx, ctx.local_rewards)
    return core.reinforce_pp_advantages(ctx.token_rewards(), ctx.scored_mask(), ctx.args.gamma, reducer=ctx.reducer)


@register_estimator("reinforce_pp_baseline", uses_gamma=True)
def reinforce_pp_baseline(ctx: EstimatorContext) -> Tensor:
    """REINFORCE++-baseline: the group mean is subtracted from the outcome first, then as `reinforce_pp`
    (`core.reinforce_pp_baseline_advantages` for gamma = 1)."""
    outcome = core.dr_grpo_advantages(ctx.rewards, ctx.group_ids)[ctx.local]
    _log_outcome(ctx, outcome)
    return core.reinforce_pp_advantages(ctx.token_rewards(outcome), ctx.scored_mask(), ctx.args.gamma,
                                        reducer=ctx.reducer)


@register_estimator("remax", needs_greedy_baseline=True)
def remax(ctx: EstimatorContext) -> Tensor:
    """Returns minus the reward of the prompt's greedy completion (ReMax, https://huggingface.co/papers/2310.10505)."""
    greedy = ctx.greedy_rewards
    advantages = core.remax_advantages(ctx.token_rewards(), greedy[ctx.local], ctx.mask)
    advantages = torch.where(torch.isnan(ctx.local_rewards)[:, None], 0.0, advantages)
    ctx.log("remax/greedy_reward", torch.nanmean(greedy).item())
    valid = ctx.mask.bool()
    totals = ctx.reducer(torch.stack([torch.where(valid, advantages, 0.0).sum(), valid.sum().to(advantages.dtype)]))
    ctx.log("remax/advantage_mean", (totals[0] / totals[1].clamp(min=1)).item())
    return advantages


@register_estimator("gae", uses_gamma=True, needs_critic=True)
def gae(ctx: EstimatorContext) -> Tensor:
    """GAE on the critic's values (Schulman 2015, https://huggingface.co/papers/1506.02438), whitened over all valid
    tokens of all processes, with the token rewards of `token_rewards` (outcome at the last token, KL penalty on every
    token, as in InstructGPT, https://huggingface.co/papers/2203.02155). Sets `ctx.returns` (advantages + values).
    `lam` comes from the config (`PPOConfig.lam`)."""
    valid = ctx.scored_mask()
    values = torch.where(valid, ctx.values, 0.0)
    advantages, ctx.returns = core.gae_advantages(ctx.token_rewards(), values, valid, ctx.args.gamma, ctx.args.lam,
                                                  reducer=ctx.reducer)
    return advantages


@register_estimator("process", needs_step_rewards=True)
def process(ctx: EstimatorContext) -> Tensor:
    """Step rewards normalised in the group, summed over the steps ending at or after each token (DeepSeekMath
    4.1.3, https://huggingface.co/papers/2402.03300); the outcome enters as a last step (`outcome_weight`)."""
    from trl_plus.engine.process_rewards import process_estimator

    return process_estimator(ctx)


@register_estimator("raft", loss="nll")
def raft(ctx: EstimatorContext) -> Tensor:
    """Best-of-K selection: 1.0 for a kept completion, 0.0 otherwise (RAFT, https://huggingface.co/papers/2304.06767);
    the trainer trains the kept rows with the NLL."""
    from trl_plus.engine.best_of_k import select

    rewards = ctx.sequence_rewards()
    lengths = ctx.gather(ctx.mask.sum(1))
    kept = select(rewards, lengths, ctx.group_ids, ctx.args)
    ctx.log("rahf/kept_fraction", kept.float().mean().item())
    ctx.log("rahf/reward_kept_mean", rewards[kept].mean().item() if kept.any() else math.nan)
    ctx.log("rahf/reward_all_mean", torch.nanmean(rewards).item())
    return kept[ctx.local].float()
