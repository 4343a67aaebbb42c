"""Hand-computed values of the Plackett-Luce negative log-likelihood (trl_plus.plackett_luce).

Notation in the comments: L(a, b, ...) = log(e^a + e^b + ...). A row's loss is sum_k [L(s_g(k), ..., s_K) - s_k]
over its counted factors (g(k): first position of k's tie group).
"""

import math

import pytest
import torch

from trl_plus.plackett_luce import plackett_luce_nll, reverse_cumulative_logsumexp

PAD = 99.0  # a padding value that would change every loss if it leaked in


def close(actual, expected, atol=1e-5):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), atol=atol, rtol=0)


@pytest.mark.parametrize(
    "scores, mask, top_k, levels, expected",
    [
        # K = 2: L(2, 0) - 2 = log(1 + e^-2) = 0.126928; reversed: L(0, 2) - 0 = log(1 + e^2) = 2.126928
        ([[2.0, 0.0], [0.0, 2.0]], None, None, None, [0.126928, 2.126928]),
        # K = 3 by hand: L(3,1,0) - 3 = log(e^3 + e + 1) - 3 = 0.169846; L(1,0) - 1 = log(e + 1) - 1 = 0.313262
        ([[3.0, 1.0, 0.0]], None, None, None, [0.483108]),
        # K = 3 in the worst order: L(0,1,3) - 0 = 3.169846; L(1,3) - 1 = 2.126928
        ([[0.0, 1.0, 3.0]], None, None, None, [5.296774]),
        # equal scores, no ties declared: log 3 + log 2 = log 6
        ([[0.0, 0.0, 0.0]], None, None, None, [math.log(6)]),
        # ties: a tied pair shares the denominator L(0, 0): 2 log 2
        ([[0.0, 0.0]], None, None, [[0, 0]], [2 * math.log(2)]),
        # tie at the top of 3: 2 * (L(1,1,0) - 1) = 2 * 0.861995; the last factor is 1
        ([[1.0, 1.0, 0.0]], None, None, [[0, 0, 1]], [1.723990]),
        # tie in the middle of 4: L(2,1,1,0) - 2 = 0.626523, then 2 * (L(1,1,0) - 1) = 1.723990
        ([[2.0, 1.0, 1.0, 0.0]], None, None, [[0, 1, 1, 2]], [2.350513]),
        # padding is masked: the K = 3 and K = 2 rows above, padded to 4
        ([[3.0, 1.0, 0.0, PAD], [2.0, 0.0, PAD, PAD]], [[1, 1, 1, 0], [1, 1, 0, 0]], None, None, [0.483108, 0.126928]),
        # padding with tie levels: the pad never joins the tie group
        ([[0.0, 0.0, PAD]], [[1, 1, 0]], None, [[0, 0, 0]], [2 * math.log(2)]),
        # top_k = 1: only the first factor, L(3,1,0) - 3
        ([[3.0, 1.0, 0.0]], None, 1, None, [0.169846]),
        # top_k = 2 and 3 (= K): every informative factor
        ([[3.0, 1.0, 0.0]], None, 2, None, [0.483108]),
        ([[3.0, 1.0, 0.0]], None, 3, None, [0.483108]),
        # top_k with variable K, each row keeps its first 2 factors: L(3,1,0,-1) - 3 = 0.185182 plus
        # L(1,0,-1) - 1 = 0.407606; the K = 2 row has one informative factor, L(0, 2) - 0
        ([[3.0, 1.0, 0.0, -1.0], [0.0, 2.0, PAD, PAD]], [[1, 1, 1, 1], [1, 1, 0, 0]], 2, None, [0.592788, 2.126928]),
        # top_k = 1 cutting a tie at the top keeps the whole tie group: 2 * (L(1,1,0) - 1), as without top_k
        ([[1.0, 1.0, 0.0]], None, 1, [[0, 0, 1]], [1.723990]),
        # top_k = 1 before a tie group: only L(2,1,1,0) - 2
        ([[2.0, 1.0, 1.0, 0.0]], None, 1, [[0, 1, 1, 2]], [0.626523]),
        # large scores without overflow: L(1e4, 0) - 1e4 = log(1 + e^-1e4) = 0; L(0, 1e4) - 0 = 1e4
        ([[1e4, 0.0], [0.0, 1e4]], None, None, None, [0.0, 1e4]),
        # L(-1e4, 1e4, 5) + 1e4 = 2e4, then L(1e4, 5) - 1e4 = 0
        ([[-1e4, 1e4, 5.0]], None, None, None, [2e4]),
    ],
    ids=["k2", "k3", "k3-reversed", "equal-untied", "tie-pair", "tie-top", "tie-middle", "masked-padding",
         "masked-tie", "top1", "top2", "top3", "top2-variable-k", "top1-tie-kept-whole", "top1-before-tie",
         "large-k2", "large-k3"],
)
def test_plackett_luce_values(scores, mask, top_k, levels, expected):
    scores = torch.tensor(scores, requires_grad=True)
    loss = plackett_luce_nll(
        scores,
        mask=None if mask is None else torch.tensor(mask),
        top_k=top_k,
        levels=None if levels is None else torch.tensor(levels),
    )
    close(loss, expected, atol=1e-5 * max(1.0, max(abs(e) for e in expected)))
    loss.sum().backward()
    assert torch.isfinite(scores.grad).all()
    if mask is not None:  # padding gets no gradient
        assert (scores.grad[~torch.tensor(mask).bool()] == 0).all()


def test_k2_equals_bradley_terry():
    s = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)) * 5
    close(plackett_luce_nll(s), -torch.nn.functional.logsigmoid(s[:, 0] - s[:, 1]))


def test_gradient_pushes_the_ranking():
    # d/ds_k: softmax weights of the factors k appears in, minus 1 for its own factor. At equal scores (K = 3):
    # s_1: 1/3 - 1 = -2/3; s_2: 1/3 + 1/2 - 1 = -1/6; s_3: 1/3 + 1/2 + 1 - 1 = 5/6
    s = torch.zeros(1, 3, requires_grad=True)
    plackett_luce_nll(s).sum().backward()
    close(s.grad, [[-2 / 3, -1 / 6, 5 / 6]])


def test_reverse_cumulative_logsumexp():
    x = torch.tensor([[0.0, 0.0, math.log(2.0)]])
    # suffixes: log(1 + 1 + 2) = log 4, log(1 + 2) = log 3, log 2
    close(reverse_cumulative_logsumexp(x), [[math.log(4), math.log(3), math.log(2)]])
    masked = reverse_cumulative_logsumexp(x, torch.tensor([[1, 1, 0]]))
    close(masked[:, :2], [[math.log(2), 0.0]])
    assert masked[0, 2] == torch.finfo(x.dtype).min


@pytest.mark.parametrize(
    "scores, kwargs, message",
    [
        ([[1.0]], {}, "row 0 of the batch has fewer than 2 responses"),
        ([[1.0, 0.0], [1.0, PAD]], {"mask": [[1, 1], [1, 0]]}, "row 1 of the batch has fewer than 2 responses"),
        ([[1.0, math.nan]], {}, "row 0 of the batch has a non-finite score"),
        ([[1.0, 0.0], [math.inf, 0.0]], {}, "row 1 of the batch has a non-finite score"),
        ([[1.0, 0.0, 2.0], [1.0, 0.0, PAD]], {"top_k": 3, "mask": [[1, 1, 1], [1, 1, 0]]},
         "top_k=3 is larger than K=2 of row 1"),
        ([[1.0, 0.0]], {"top_k": 0}, "top_k must be >= 1"),
        ([[1.0, PAD, 0.0]], {"mask": [[1, 0, 1]]}, "prefix of each row"),
        ([[1.0, 0.0]], {"levels": [[1, 0]]}, "non-decreasing"),
        ([1.0, 0.0], {}, "must be (B, K)"),
    ],
    ids=["k1", "k1-masked", "nan", "inf", "top-k-too-large", "top-k-zero", "mask-not-prefix", "levels-decreasing",
         "not-2d"],
)
def test_plackett_luce_errors(scores, kwargs, message):
    kwargs = {k: torch.tensor(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    with pytest.raises(ValueError) as e:
        plackett_luce_nll(torch.tensor(scores), **kwargs)
    assert message in str(e.value)
