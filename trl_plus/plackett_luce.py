"""Plackett-Luce likelihood of a ranking: the listwise generalisation of the Bradley-Terry model.

For K responses ranked best first with scores s_1..s_K (a reward model's outputs, or DPO's implicit rewards
beta * log(pi_theta(y|x) / pi_ref(y|x))), the Plackett-Luce model gives the ranking the probability

    P(ranking) = prod_{k=1..K} exp(s_k) / sum_{j=k..K} exp(s_j)

(Plackett 1975, Luce 1959; its DPO form is in the appendix of the DPO paper,
https://huggingface.co/papers/2305.18290, eq. 18). With K = 2 the negative log-likelihood is
-log sigmoid(s_1 - s_2), the Bradley-Terry loss of TRL's RewardTrainer and of sigmoid DPO.

Pure functions of tensors: no trainer state, no device moves, vectorised over the batch.

Shapes: `scores` is `(B, K)`, each row already in ranked order (best first) and right-padded to the longest list of
the batch; `mask` is `(B, K)` (bool or 0/1), true for real responses, and must be a prefix (padding only at the end);
`levels` is an optional `(B, K)` integer tensor of tie levels, non-decreasing along each row: equal levels are tied.

Ties (Breslow's rule, as in Cox's partial likelihood, of which Plackett-Luce is a special case): every member of a
tie group is the "next choice" over the same set, the group and everything ranked below it. So a tied pair gets the
loss -log sigmoid(s_1 - s_2) - log sigmoid(s_2 - s_1), which is smallest when their scores are equal, and a tie
never claims that one of the tied responses is better.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["plackett_luce_nll", "reverse_cumulative_logsumexp"]


def reverse_cumulative_logsumexp(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """`out[..., k] = log sum_{j >= k, mask[..., j]} exp(x[..., j])`, computed without overflow.

    Shapes: `x` `(..., K)`, `mask` `(..., K)` or None; returns `(..., K)`. Masked entries contribute nothing; at a
    position where no unmasked entry remains the value is the dtype's most negative finite number (never -inf,
    so gradients stay finite).
    """
    neg = torch.finfo(x.dtype).min
    if mask is not None:
        x = x.masked_fill(~mask.bool(), neg)
    return torch.logcumsumexp(x.flip(-1), dim=-1).flip(-1).clamp(min=neg)


def plackett_luce_nll(
    scores: Tensor, mask: Tensor | None = None, top_k: int | None = None, levels: Tensor | None = None
) -> Tensor:
    """Negative log-likelihood of each row's ranking under the Plackett-Luce model; returns `(B,)`.

    Row b contributes sum_{k < min(top_k, K_b)} [logsumexp(s_{g(k)..K_b}) - s_k], where K_b is its number of real
    responses and g(k) the first position of k's tie group (g(k) = k without ties). `top_k` keeps only the first
    `top_k` factors (a truncated ranking: only the best few positions are trusted); None keeps all. A tie group
    that starts within the first `top_k` positions is kept whole, so a cut never ranks tied responses. The last
    factor of an untied row is always 1, so `top_k = K - 1` and `top_k = K` give the same loss.

    Raises ValueError for a bad shape, a mask that is not a prefix, fewer than 2 real responses in a row, non-finite
    scores at real positions, `top_k < 1`, `top_k` larger than a row's K (naming the row), or decreasing levels.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be (B, K), got shape {tuple(scores.shape)}.")
    if not scores.is_floating_point():
        scores = scores.float()
    B, K = scores.shape
    mask = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask.bool()
    if mask.shape != scores.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)} but scores have {tuple(scores.shape)}.")
    sizes = mask.sum(-1)
    positions = torch.arange(K, device=scores.device)
    if not torch.equal(mask, positions < sizes.unsqueeze(-1)):
        raise ValueError("mask must be true for a prefix of each row (right padding only): sort each row best first.")
    problems = {"fewer than 2 responses": sizes < 2, "a non-finite score": (~torch.isfinite(scores) & mask).any(-1)}
    for name, bad in problems.items():
        if bad.any():
            raise ValueError(f"row {int(bad.nonzero()[0])} of the batch has {name}; a ranking needs K >= 2 finite "
                             "scores.")
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1 (or None for the whole ranking), got {top_k}.")
        too_short = sizes < top_k
        if too_short.any():
            row = int(too_short.nonzero()[0])
            raise ValueError(f"top_k={top_k} is larger than K={int(sizes[row])} of row {row}: lower top_k.")
    if levels is None:
        start = positions.expand(B, K)
    else:
        if levels.shape != scores.shape:
            raise ValueError(f"levels has shape {tuple(levels.shape)} but scores have {tuple(scores.shape)}.")
        # padding gets a level above every real one, so it never joins a real tie group
        levels = levels.masked_fill(~mask, torch.iinfo(torch.long).max).long()
        if (levels.diff(dim=-1) < 0).any():
            raise ValueError("levels must be non-decreasing along each row (best first, ties equal).")
        start = torch.searchsorted(levels.contiguous(), levels.contiguous(), right=False)
    denominators = reverse_cumulative_logsumexp(scores, mask).gather(-1, start)
    # a tie group that starts inside the first top_k positions counts whole: cutting it would rank its members
    counted = mask & (start < (K if top_k is None else top_k))
    per_factor = (denominators - scores).masked_fill(~counted, 0.0)
    return per_factor.sum(-1)
