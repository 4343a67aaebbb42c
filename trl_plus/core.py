"""Functional core of trl-plus: KL estimators, advantage estimators and loss aggregation.

Every function here is a pure function of tensors: no trainer state, no device moves, vectorised over the batch.
Each docstring names its paper; `docs/algorithms.md` explains the algorithms and the choices made here.

Shapes: `B` completions, `T` (right-padded) completion tokens, `mask` is the `(B, T)` completion mask (bool, int or
float; any non-zero entry is a real token). `group_ids` is a `(B,)` integer tensor naming the group (prompt) of each
row; groups need not be contiguous. A NaN reward marks an unscorable completion (every reward function returned
None): it is left out of every group statistic and its row gets advantage 0.

`reducer` (optional, wherever statistics can be global): an object with a `.reduce(tensor, reduction="sum")` method,
such as `accelerate.Accelerator`, or a callable returning the sum of a tensor over all processes. With it, whitening
uses the statistics of the whole global batch, so N processes give the same advantages as one process with all data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from trl_plus.core_validation import (
    _check_discount,
    _check_groups,
    _check_mask,
    _check_rows,
    _check_same_shape,
    _float_dtype,
    _global_sum,
    _shape,
)

__all__ = [
    "ESTIMATORS",
    "KL_ESTIMATORS",
    "LOSS_MODES",
    "aggregate_loss",
    "dr_grpo_advantages",
    "estimator_names",
    "gae_advantages",
    "get_estimator",
    "grpo_advantages",
    "kl_penalty",
    "masked_whiten",
    "process_advantages",
    "reinforce_pp_advantages",
    "reinforce_pp_baseline_advantages",
    "remax_advantages",
    "returns_to_go",
    "rloo_advantages",
    "token_level_rewards",
    "weighted_rewards",
]

KL_ESTIMATORS = ("k1", "k2", "k3", "abs")
LOSS_MODES = ("grpo", "dr_grpo", "dapo")
WHITEN_EPS = 1e-8


# ----------------------------------------------------------------------------------------------------------------------
# KL estimators (Schulman 2020, http://joschu.net/blog/kl-approx.html)


def kl_penalty(logp: Tensor, ref_logp: Tensor, estimator: str) -> Tensor:
    """Per-token KL estimate between the policy and the reference, from log-probs of the sampled tokens.

    With `d = logp - ref_logp` clamped to [-20, 20]: `k1 = d`, `k2 = d^2 / 2`, `k3 = exp(-d) - 1 + d` (TRL's GRPO
    loss), `abs = |d|`; the result is clamped to [-10, 10] (J. Schulman, "Approximating KL divergence", 2020). The
    clamps keep one far-off-policy token from overflowing `exp` or dominating the loss.

    Args:
        logp: `(B, T)` (any shape) log-probs under the policy.
        ref_logp: same shape, log-probs under the reference.
        estimator: one of `KL_ESTIMATORS`.

    Returns:
        Tensor of the same shape. Padding positions are not masked here.
    """
    _check_same_shape("logp", logp, "ref_logp", ref_logp)
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"Unknown KL estimator {estimator!r}; valid estimators: {', '.join(KL_ESTIMATORS)}.")
    d = (logp - ref_logp).clamp(-20.0, 20.0)
    if estimator == "k1":
        kl = d
    elif estimator == "k2":
        kl = 0.5 * d.square()
    elif estimator == "k3":
        kl = torch.expm1(-d) + d  # = exp(-d) - 1 + d, without the cancellation of exp(-d) - 1 for small d
    else:
        kl = d.abs()
    return kl.clamp(-10.0, 10.0)


# ----------------------------------------------------------------------------------------------------------------------
# Token-level rewards, returns and whitening


def weighted_rewards(rewards_per_func: Tensor, weights: Tensor) -> Tensor:
    """Weighted sum of the reward functions' scores, (N, F) x (F,) -> (N,).

    A function that abstained on a row (NaN) is left out of that row's sum; a row where every function abstained
    stays NaN, so the estimators can tell "no reward" from a reward of 0.
    """
    rewards = (rewards_per_func * weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
    rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
    return rewards


def _last_token_index(valid: Tensor) -> Tensor:
    """`(B,)` index of the last valid token of each row, -1 for an all-padding row."""
    if valid.shape[1] == 0:  # amax cannot reduce an empty dim
        return torch.full((valid.shape[0],), -1, device=valid.device)
    positions = torch.arange(valid.shape[1], device=valid.device)
    return torch.where(valid, positions, -1).amax(dim=1)


def token_level_rewards(
    rewards: Tensor,
    mask: Tensor,
    kl: Tensor | None = None,
    kl_coef: float = 0.0,
    reward_clip: float | None = None,
) -> Tensor:
    """Spread outcome rewards over tokens: `-kl_coef * kl` on every valid token, plus the (clipped) outcome at the
    last valid token, as in PPO for LLMs (https://huggingface.co/papers/2203.02155) and REINFORCE++
    (https://huggingface.co/papers/2501.03262).

    Args:
        rewards: `(B,)` outcome rewards. A NaN (unscorable) outcome contributes 0.
        mask: `(B, T)` completion mask.
        kl: optional `(B, T)` per-token KL (e.g. `kl_penalty(logp_old, logp_ref, "k1")`).
        kl_coef: KL coefficient; 0 means no KL in the reward.
        reward_clip: if set, outcomes are clipped to `[-reward_clip, reward_clip]`.

    Returns:
        `(B, T)` token rewards, 0 on padding. An all-padding row stays all 0.
    """
    _check_mask(mask)
    _check_rows("rewards", rewards, mask)
    valid = mask.bool()
    dtype = _float_dtype(rewards, *(() if kl is None else (kl,)))
    out = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    if kl is not None and kl_coef != 0.0:
        _check_same_shape("kl", kl, "mask", mask)
        # where, not multiply: padding may hold inf/NaN log-prob differences and NaN * 0 is NaN.
        out = torch.where(valid, -kl_coef * kl.to(dtype), out)
    outcome = torch.nan_to_num(rewards.to(dtype), nan=0.0)
    if reward_clip is not None:
        outcome = outcome.clamp(-reward_clip, reward_clip)
    last = _last_token_index(valid)
    rows = torch.nonzero(last >= 0).squeeze(1)
    out[rows, last[rows]] += outcome[rows]
    return out


def _discounted_reverse_cumsum(x: Tensor, discount: float, block: int = 64) -> Tensor:
    """`y[:, t] = x[:, t] + discount * y[:, t + 1]` along the last dim of a `(B, T)` tensor."""
    if discount == 1.0:
        return x.flip(-1).cumsum(-1).flip(-1)
    if discount == 0.0 or x.numel() == 0:
        return x.clone()
    # The recursion is sequential in T. Rather than T tiny steps, solve it exactly inside blocks of `block` tokens
    # with one matmul (weight discount^(k - t) from token k to token t <= k), then carry the return at each block's
    # first token back into the previous block: T / block steps, and no power below discount^block to underflow.
    batch, length = x.shape
    k = torch.arange(block, device=x.device, dtype=torch.float64)
    exponent = k[:, None] - k[None, :]
    weights = torch.where(exponent >= 0, discount ** exponent.clamp(min=0), 0.0).to(x.dtype)
    carry = (discount ** (block - k)).to(x.dtype)
    out = torch.nn.functional.pad(x, (0, -length % block)).view(batch, -1, block) @ weights
    for j in range(out.shape[1] - 2, -1, -1):
        out[:, j].addcmul_(out[:, j + 1, :1], carry)
    return out.view(batch, -1)[:, :length]


def returns_to_go(token_rewards: Tensor, mask: Tensor, gamma: float = 1.0) -> Tensor:
    """Discounted returns `R[b, t] = token_rewards[b, t] + gamma * R[b, t + 1]` over valid tokens.

    Args:
        token_rewards: `(B, T)`.
        mask: `(B, T)` completion mask; padding rewards are ignored and padding returns are 0.
        gamma: discount in [0, 1]; 1 (a cumulative sum) is the REINFORCE++ / ReMax setting.

    Returns:
        `(B, T)` returns.
    """
    _check_mask(mask)
    _check_same_shape("token_rewards", token_rewards, "mask", mask)
    _check_discount("gamma", gamma)
    valid = mask.bool()
    x = torch.where(valid, token_rewards, 0.0)
    return _discounted_reverse_cumsum(x, gamma).masked_fill_(~valid, 0.0)


def masked_whiten(x: Tensor, mask: Tensor, reducer: Any = None, shift_mean: bool = True) -> Tensor:
    """Whiten `x` over its valid entries: `(x - mean) / sqrt(var + 1e-8)`, times `mask`.

    `mean = sum(m*x) / n`, `var = sum(m*(x - mean)^2) / (n - 1)` (unbiased) with `n = sum(m)`. With a `reducer` the
    three sums are taken over all processes, so sharding a batch does not change the result (the "global" whitening
    of REINFORCE++, https://huggingface.co/papers/2501.03262). The sums are accumulated in float64, so a different
    split of the same data changes the result by rounding at most.

    Args:
        x: `(B, T)` (any shape) values.
        mask: same shape as `x`.
        reducer: optional cross-process sum (see the module docstring).
        shift_mean: if False, the mean is added back (only the scale is normalised).

    Returns:
        Tensor shaped like `x`, 0 where `mask` is 0. With `n <= 1` there is no spread to normalise by: the
        result is 0 (a single value minus its own mean), never NaN.
    """
    _check_same_shape("x", x, "mask", mask)
    valid = mask.bool()
    xm = torch.where(valid, x, 0.0)
    first = torch.stack([xm.sum(dtype=torch.float64), valid.sum(dtype=torch.float64)])
    total, n = _global_sum(first, reducer).unbind()
    mean = total / n.clamp(min=1.0)
    # Element-wise work stays in x's dtype (it is memory-bound); only the accumulations are float64.
    centered = torch.where(valid, xm - mean.to(x.dtype), 0.0)
    sq = _global_sum(centered.square().sum(dtype=torch.float64).reshape(1), reducer)[0]
    var = torch.where(n > 1, sq / (n - 1).clamp(min=1.0), 0.0)
    white = centered * torch.rsqrt(var + WHITEN_EPS).to(x.dtype)
    if not shift_mean:
        white = torch.where(valid, white + mean.to(x.dtype), 0.0)
    return white


# ----------------------------------------------------------------------------------------------------------------------
# Sequence-level (group) advantages


def _group_stats(values: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Per-row statistics of each row's group over its non-NaN members, in float64.

    Returns `(valid, count, mean, std, flat)`, each `(B,)`: whether the row's own value is valid, the group's number
    of valid members, their mean and unbiased std, and whether all valid members of the group are exactly equal.
    The last one is tested with max == min rather than std == 0 because the float mean of equal values need not equal
    them, which would give a tiny non-zero advantage instead of exactly 0.
    """
    uniques, inverse = torch.unique(group_ids, return_inverse=True)
    num_groups = uniques.numel()
    valid = ~torch.isnan(values)
    v = torch.where(valid, values.to(torch.float64), 0.0)
    zeros = torch.zeros(num_groups, dtype=torch.float64, device=values.device)
    count = zeros.index_add(0, inverse, valid.to(torch.float64))
    mean = zeros.index_add(0, inverse, v) / count.clamp(min=1.0)
    dev = torch.where(valid, v - mean[inverse], 0.0)
    var = zeros.index_add(0, inverse, dev.square()) / (count - 1.0).clamp(min=1.0)
    inf = torch.full_like(zeros, math.inf)
    gmax = (-inf).scatter_reduce(0, inverse, torch.where(valid, v, -math.inf), "amax")
    gmin = inf.scatter_reduce(0, inverse, torch.where(valid, v, math.inf), "amin")
    flat = gmax == gmin
    return valid, count[inverse], mean[inverse], var.sqrt()[inverse], flat[inverse]


def _normalise_in_groups(values: Tensor, group_ids: Tensor, scale: bool, eps: float) -> Tensor:
    """GRPO normalisation `(v - mean_g) / (std_g + eps)` in float64, with the edge rules of `grpo_advantages`.

    A group with a single valid member is flat by construction (max == min), so it gets 0 with the other flat groups:
    one value has nothing in its group to be compared with, so it carries no group-relative signal (as in TRL).
    """
    valid, _, mean, std, flat = _group_stats(values, group_ids)
    adv = values.to(torch.float64) - mean
    if scale:
        adv = adv / (std + eps)
    return torch.where(valid & ~flat, adv, 0.0)


def grpo_advantages(rewards: Tensor, group_ids: Tensor, scale: bool = True, eps: float = 1e-6) -> Tensor:
    """GRPO group-relative advantages `(r - mean_g(r)) / (std_g(r) + eps)` (DeepSeekMath,
    https://huggingface.co/papers/2402.03300), with the unbiased group std.

    Edge cases, in order of precedence:
      - a NaN (unscorable) reward is left out of its group's statistics and gets advantage 0 (as TRL 1.16);
      - a group with exactly one valid member (a prompt sampled once, or a group whose other members are all
        unscorable) gets 0: a single reward has no other member to be compared with, so it carries no
        group-relative signal. This is TRL 1.16's result too (its `nanstd` of one value is NaN, turned into 0);
      - any other group whose valid rewards are all equal gets exactly 0 (never NaN or a rounding residue).

    Args:
        rewards: `(B,)` rewards, NaN for unscorable completions.
        group_ids: `(B,)` integer group of each row (non-contiguous groups allowed).
        scale: divide by the group std (`False` = TRL's `scale_rewards="none"`).
        eps: added to the std.

    Returns:
        `(B,)` advantages in the dtype of `rewards`.
    """
    _check_groups(rewards, group_ids)
    return _normalise_in_groups(rewards, group_ids, scale, eps).to(_float_dtype(rewards))


def dr_grpo_advantages(rewards: Tensor, group_ids: Tensor) -> Tensor:
    """Dr. GRPO advantages `r - mean_g(r)`, without the std division (Liu et al. 2025, "Understanding R1-Zero-Like
    Training: A Critical Perspective", https://huggingface.co/papers/2503.20783).

    NaN rewards are excluded from the mean and get 0; an all-equal group (a group of one included: its mean is its
    own reward) gets exactly 0.

    Args:
        rewards: `(B,)`. group_ids: `(B,)` integers.

    Returns:
        `(B,)` advantages.
    """
    _check_groups(rewards, group_ids)
    valid, _, mean, _, flat = _group_stats(rewards, group_ids)
    adv = torch.where(valid & ~flat, rewards.to(torch.float64) - mean, 0.0)
    return adv.to(_float_dtype(rewards))


def rloo_advantages(rewards: Tensor, group_ids: Tensor) -> Tensor:
    """RLOO advantages: each reward minus the mean of the other `G - 1` rewards of its group,
    `G / (G - 1) * (r - mean_g(r))` (Ahmadian et al. 2024, https://huggingface.co/papers/2402.14740).

    `G` counts the valid (non-NaN) members; NaN rows get 0; a group with one valid member has no other sample to
    compare with and gets 0 (no division by zero); an all-equal group gets exactly 0.

    Args:
        rewards: `(B,)`. group_ids: `(B,)` integers.

    Returns:
        `(B,)` advantages.
    """
    _check_groups(rewards, group_ids)
    valid, count, mean, _, flat = _group_stats(rewards, group_ids)
    factor = count / (count - 1.0).clamp(min=1.0)
    adv = factor * (rewards.to(torch.float64) - mean)
    return torch.where(valid & ~flat & (count > 1), adv, 0.0).to(_float_dtype(rewards))


# ----------------------------------------------------------------------------------------------------------------------
# Token-level advantages


def reinforce_pp_advantages(token_rewards: Tensor, mask: Tensor, gamma: float = 1.0, reducer: Any = None) -> Tensor:
    """REINFORCE++ advantages: returns-to-go whitened over the global batch (Hu 2025,
    https://huggingface.co/papers/2501.03262).

    Args:
        token_rewards: `(B, T)`, usually from `token_level_rewards` (k1 KL in the reward, outcome clipped to 10).
        mask: `(B, T)`.
        gamma: discount in [0, 1].
        reducer: optional cross-process sum, so the whitening statistics are global.

    Returns:
        `(B, T)` advantages, 0 on padding.
    """
    return masked_whiten(returns_to_go(token_rewards, mask, gamma), mask, reducer)


def reinforce_pp_baseline_advantages(
    rewards: Tensor,
    group_ids: Tensor,
    mask: Tensor,
    kl: Tensor | None = None,
    kl_coef: float = 0.0,
    reducer: Any = None,
) -> Tensor:
    """REINFORCE++-baseline: the group mean is subtracted from the outcome (`dr_grpo_advantages`), the result sits at
    the last valid token, `-kl_coef * kl` on every token, returns-to-go (gamma = 1), then global whitening (Hu 2025,
    https://huggingface.co/papers/2501.03262).

    A NaN-reward row is removed from the whitening statistics and gets 0 on every token; a group of one has no
    baseline to subtract, so its centred outcome is 0 (only its KL terms remain).

    Args:
        rewards: `(B,)`. group_ids: `(B,)` integers. mask: `(B, T)`.
        kl: optional `(B, T)` per-token KL. kl_coef: its coefficient.
        reducer: optional cross-process sum for the whitening statistics (groups themselves must be local).

    Returns:
        `(B, T)` advantages.
    """
    _check_mask(mask)
    _check_rows("rewards", rewards, mask)
    _check_groups(rewards, group_ids)
    centred = dr_grpo_advantages(rewards, group_ids)
    scored = mask.bool() & ~torch.isnan(rewards)[:, None]
    token_rewards = token_level_rewards(centred, scored, kl=kl, kl_coef=kl_coef)
    return masked_whiten(returns_to_go(token_rewards, scored), scored, reducer)


def remax_advantages(token_rewards: Tensor, baseline_rewards: Tensor, mask: Tensor) -> Tensor:
    """ReMax advantages `R[b, t] - r_greedy[b]` on valid tokens, no whitening (Li et al. 2023,
    https://huggingface.co/papers/2310.10505). `R` are the undiscounted returns-to-go of `token_rewards`.

    Args:
        token_rewards: `(B, T)` (outcome at the last token, optional KL per token).
        baseline_rewards: `(B,)` reward of the greedy completion of each row's prompt. A NaN (unscorable greedy
            completion) gives no baseline: that row gets 0.
        mask: `(B, T)`.

    Returns:
        `(B, T)` advantages, 0 on padding.
    """
    _check_mask(mask)
    _check_rows("baseline_rewards", baseline_rewards, mask)
    returns = returns_to_go(token_rewards, mask, 1.0)
    keep = mask.bool() & ~torch.isnan(baseline_rewards)[:, None]
    return torch.where(keep, returns - baseline_rewards.to(returns.dtype)[:, None], 0.0)


def process_advantages(
    step_rewards: Sequence[Sequence[float | None]],
    step_token_ends: Sequence[Sequence[int]],
    group_ids: Tensor,
    mask: Tensor,
    eps: float = 1e-6,
    step_kinds: Sequence[Sequence[int]] | None = None,
    kind_weights: Sequence[float] | None = None,
) -> Tensor:
    """Process-supervised GRPO advantages (DeepSeekMath section 4.1.3, https://huggingface.co/papers/2402.03300).

    Step rewards are normalised over all steps of all completions of the group, `r~ = (r - mean) / (std + eps)`,
    with the same rules as `grpo_advantages` (NaN/None steps excluded and 0, a group with a single valid step gives
    0, an all-equal group gives 0). Then `A[i, t]` is the sum of `r~` over the steps `j`
    of completion `i` with `index(j) >= t`: tokens after the last step's end get 0, and so does a completion with
    no steps.

    With `step_kinds`, steps of different kinds (say text steps and an outcome step) are normalised apart, each
    kind over its own steps in the group, and kind `k`'s `r~` is multiplied by `kind_weights[k]` (default 1).
    Pooled, a kind with larger or more frequent rewards sets the mean for all: when most outcomes are right, the
    outcome steps lift the mean above every text step, and each text step, right or wrong, turns negative.

    Args:
        step_rewards: `B` lists, the step rewards of each completion (None or NaN for an unscorable step).
        step_token_ends: `B` lists of the same lengths, the token index `index(j)` (0-based, `< T`) of each step's
            last token.
        group_ids: `(B,)` integers. mask: `(B, T)`.
        eps: added to the std.
        step_kinds: optional `B` lists of the same lengths, an integer kind `>= 0` per step; None: one kind.
        kind_weights: optional weight per kind, applied after normalisation (a weight before it cancels).

    Returns:
        `(B, T)` advantages, 0 on padding.
    """
    _check_mask(mask)
    batch, length = mask.shape
    if group_ids.dim() != 1 or group_ids.shape[0] != batch:
        raise ValueError(f"`group_ids` has shape {_shape(group_ids)} but `mask` has shape {_shape(mask)}.")
    if len(step_rewards) != batch or len(step_token_ends) != batch:
        raise ValueError(
            f"`step_rewards` has {len(step_rewards)} completions and `step_token_ends` has "
            f"{len(step_token_ends)}, but `mask` has shape {_shape(mask)}; all must have B = {batch}."
        )
    counts = [len(r) for r in step_rewards]
    kinds = [[0] * n for n in counts] if step_kinds is None else step_kinds
    if len(kinds) != batch:
        raise ValueError(f"`step_kinds` has {len(kinds)} completions but `mask` has shape {_shape(mask)}.")
    for i, (rs, ends, ks) in enumerate(zip(step_rewards, step_token_ends, kinds)):
        if len(rs) != len(ends) or len(rs) != len(ks):
            raise ValueError(
                f"Completion {i}: `step_rewards[{i}]` has {len(rs)} steps but `step_token_ends[{i}]` has {len(ends)}"
                f" and `step_kinds[{i}]` has {len(ks)}; give one entry per step in each."
            )
    dtype = torch.get_default_dtype()
    out = torch.zeros((batch, length), dtype=dtype, device=mask.device)
    if sum(counts) == 0:
        return out
    flat_rewards = torch.tensor(
        [math.nan if r is None else r for rs in step_rewards for r in rs], dtype=torch.float64, device=mask.device
    )
    ends = torch.tensor([e for es in step_token_ends for e in es], dtype=torch.long, device=mask.device)
    if ends.min() < 0 or ends.max() >= length:
        raise ValueError(
            f"`step_token_ends` must lie in [0, {length}) for `mask` of shape {_shape(mask)}, got "
            f"values in [{int(ends.min())}, {int(ends.max())}]."
        )
    rows = torch.repeat_interleave(torch.arange(batch, device=mask.device), torch.tensor(counts, device=mask.device))
    flat_kinds = torch.tensor([k for ks in kinds for k in ks], dtype=torch.long, device=mask.device)
    n_kinds = int(flat_kinds.max()) + 1
    weights = [1.0] * n_kinds if kind_weights is None else [float(w) for w in kind_weights]
    if int(flat_kinds.min()) < 0 or len(weights) < n_kinds:
        raise ValueError(f"`step_kinds` must be integers in [0, {len(weights)}) (one `kind_weights` entry per kind), "
                         f"got values in [{int(flat_kinds.min())}, {n_kinds - 1}].")
    # One pool per (group, kind): the kind is the low digit of the pool id in base n_kinds.
    pools = (group_ids[rows] - group_ids.min()) * n_kinds + flat_kinds
    normalised = _normalise_in_groups(flat_rewards, pools, scale=True, eps=eps)
    normalised = normalised * torch.tensor(weights, dtype=torch.float64, device=mask.device)[flat_kinds]
    # Drop each normalised step reward at its end token; a reverse cumsum then sums every step ending at or after t.
    out.index_put_((rows, ends), normalised.to(dtype), accumulate=True)
    return torch.where(mask.bool(), _discounted_reverse_cumsum(out, 1.0), 0.0)


def gae_advantages(
    token_rewards: Tensor,
    values: Tensor,
    mask: Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
    reducer: Any = None,
) -> tuple[Tensor, Tensor]:
    """Generalized Advantage Estimation (Schulman et al. 2015, https://huggingface.co/papers/1506.02438), as in PPO
    for LLMs (Ouyang et al. 2022, https://huggingface.co/papers/2203.02155).

    `delta_t = r_t + gamma * V_{t+1} - V_t` (the value after the last valid token is 0: the episode ends there),
    `A_t = delta_t + gamma * lam * A_{t+1}`, `returns = A + V`; the advantages are then whitened (globally with a
    `reducer`), the returns are not.

    Args:
        token_rewards: `(B, T)`. values: `(B, T)` critic values `V_old`. mask: `(B, T)`.
        gamma: discount in [0, 1]. lam: GAE lambda in [0, 1].
        reducer: optional cross-process sum for the whitening statistics.

    Returns:
        `(advantages, returns)`, both `(B, T)` and 0 on padding.
    """
    _check_mask(mask)
    _check_same_shape("token_rewards", token_rewards, "mask", mask)
    _check_same_shape("values", values, "mask", mask)
    _check_discount("gamma", gamma)
    _check_discount("lam", lam)
    valid = mask.bool()
    padding = ~valid
    v = torch.where(valid, values, 0.0)
    next_v = torch.nn.functional.pad(v[:, 1:], (0, 1))
    delta = torch.where(valid, token_rewards, 0.0).add_(next_v, alpha=gamma).sub_(v).masked_fill_(padding, 0.0)
    adv = _discounted_reverse_cumsum(delta, gamma * lam).masked_fill_(padding, 0.0)
    return masked_whiten(adv, valid, reducer), adv + v


# ----------------------------------------------------------------------------------------------------------------------
# Loss aggregation


def aggregate_loss(
    per_token_loss: Tensor,
    mask: Tensor,
    mode: str,
    max_completion_length: int | None = None,
    num_items_in_batch: Tensor | float | None = None,
) -> Tensor:
    """Reduce a `(B, T)` per-token loss to a scalar, with TRL's `loss_type` semantics.

    - `"grpo"`: mean over the valid tokens of each sequence, then mean over sequences (GRPO, DeepSeekMath,
      https://huggingface.co/papers/2402.03300; length-biased). An all-padding row contributes 0 to the mean.
    - `"dr_grpo"`: sum over all valid tokens / (B * max_completion_length), a constant normaliser (Dr. GRPO,
      https://huggingface.co/papers/2503.20783). `max_completion_length` defaults to `T`.
    - `"dapo"`: sum over all valid tokens / number of valid tokens (token-level loss, DAPO,
      https://huggingface.co/papers/2503.14476). Pass `num_items_in_batch` to use another count (e.g. the valid
      tokens of the global batch, scaled as TRL does); the denominator is clamped to >= 1.

    Args:
        per_token_loss: `(B, T)`. mask: `(B, T)`. mode: one of `LOSS_MODES`.

    Returns:
        0-dim tensor.
    """
    _check_mask(mask)
    _check_same_shape("per_token_loss", per_token_loss, "mask", mask)
    if mode not in LOSS_MODES:
        raise ValueError(f"Unknown loss aggregation mode {mode!r}; valid modes: {', '.join(LOSS_MODES)}.")
    valid = mask.bool()
    loss = torch.where(valid, per_token_loss, 0.0)
    if mode == "grpo":
        return (loss.sum(-1) / valid.sum(-1).clamp(min=1)).mean()
    if mode == "dr_grpo":
        length = mask.shape[1] if max_completion_length is None else max_completion_length
        if length <= 0:
            raise ValueError(f"`max_completion_length` must be positive, got {length}.")
        return loss.sum() / (mask.shape[0] * length)
    count = valid.sum() if num_items_in_batch is None else torch.as_tensor(num_items_in_batch)
    return loss.sum() / count.to(loss.dtype).clamp(min=1.0)


# ----------------------------------------------------------------------------------------------------------------------
# Name registry of the pure functions. The trainer dispatches on `trl_plus.engine.estimators.ESTIMATORS` (the same
# names, each entry preparing the inputs of one of these functions), where users register their own estimators.

ESTIMATORS: dict[str, Callable[..., Any]] = {
    "grpo": grpo_advantages,
    "dr_grpo": dr_grpo_advantages,
    "rloo": rloo_advantages,
    "reinforce_pp": reinforce_pp_advantages,
    "reinforce_pp_baseline": reinforce_pp_baseline_advantages,
    "remax": remax_advantages,
    "process": process_advantages,
    "gae": gae_advantages,
}


def estimator_names() -> list[str]:
    """Names accepted by `get_estimator`, sorted."""
    return sorted(ESTIMATORS)


def get_estimator(name: str) -> Callable[..., Any]:
    """The advantage estimator function registered under `name`; raises `ValueError` listing the valid names."""
    try:
        return ESTIMATORS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown advantage estimator {name!r}; valid estimators: {', '.join(estimator_names())}."
        ) from None
