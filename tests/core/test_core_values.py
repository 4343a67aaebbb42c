"""Hand-computed values for every function of trl_plus.core.

Each expected tensor is written out literally; the comment next to it shows the arithmetic, done by hand from the
formulas of docs/algorithms.md (never by calling the function under test).
"""

import math

import pytest
import torch

from trl_plus import core

NAN = math.nan


def close(actual, expected, atol=1e-6):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), atol=atol, rtol=0)


# d = logp - ref_logp = [0, 1, -1, 2]
LOGP = torch.tensor([[-1.0, -0.5, -2.0, -0.25]])
REF = torch.tensor([[-1.0, -1.5, -1.0, -2.25]])


@pytest.mark.parametrize(
    "estimator, expected",
    [
        ("k1", [[0.0, 1.0, -1.0, 2.0]]),  # d
        ("k2", [[0.0, 0.5, 0.5, 2.0]]),  # d^2/2: 0, 1/2, 1/2, 4/2
        # exp(-d) - 1 + d: e^0-1+0 = 0, e^-1-1+1 = 0.36787944, e^1-1-1 = 0.71828183, e^-2-1+2 = 1.13533528
        ("k3", [[0.0, 0.36787944, 0.71828183, 1.13533528]]),
        ("abs", [[0.0, 1.0, 1.0, 2.0]]),  # |d|
    ],
)
def test_kl_penalty_values(estimator, expected):
    close(core.kl_penalty(LOGP, REF, estimator), expected)


@pytest.mark.parametrize(
    "estimator, expected",
    [
        ("k1", [[10.0, -10.0, 5.0]]),  # d = 30 -> 20 -> clamp 10; d = -30 -> -20 -> -10; 5 stays
        ("k2", [[10.0, 10.0, 10.0]]),  # 20^2/2 = 200 -> 10; same for -20; 5^2/2 = 12.5 -> 10
        # d = 20: e^-20 - 1 + 20 = 19.0000000021 -> 10; d = -20: e^20 - 21 = 4.85e8 -> 10 (no inf from e^30);
        # d = 5: e^-5 - 1 + 5 = 4.00673795
        ("k3", [[10.0, 10.0, 4.00673795]]),
        ("abs", [[10.0, 10.0, 5.0]]),
    ],
)
def test_kl_penalty_clamps(estimator, expected):
    logp = torch.tensor([[30.0, -30.0, 5.0]])
    close(core.kl_penalty(logp, torch.zeros_like(logp), estimator), expected)


def test_token_level_rewards_values():
    rewards = torch.tensor([2.0, -15.0, 0.5])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    # Garbage (99, NaN) on padding must not leak.
    kl = torch.tensor([[0.5, -1.0, 2.0, 99.0], [1.0, 1.0, NAN, NAN], [3.0, 3.0, 3.0, 3.0]])
    out = core.token_level_rewards(rewards, mask, kl=kl, kl_coef=0.1, reward_clip=10.0)
    expected = [
        [-0.05, 0.1, 1.8, 0.0],  # -0.1*0.5, -0.1*(-1), -0.1*2 + 2.0 at the last valid token
        [-0.1, -10.1, 0.0, 0.0],  # -0.1*1, -0.1*1 + clip(-15, -10, 10)
        [0.0, 0.0, 0.0, 0.0],  # no valid token: no outcome, no KL
    ]
    close(out, expected)


def test_token_level_rewards_without_kl_or_clip():
    out = core.token_level_rewards(torch.tensor([-15.0, 3.0]), torch.tensor([[1, 0], [1, 1]]))
    close(out, [[-15.0, 0.0], [0.0, 3.0]])  # the outcome alone, unclipped, at the last valid token


TR = torch.tensor([[1.0, 2.0, 3.0, 9.0], [4.0, 5.0, 9.0, 9.0]])
TR_MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])


@pytest.mark.parametrize(
    "gamma, expected",
    [
        (1.0, [[6.0, 5.0, 3.0, 0.0], [9.0, 5.0, 0.0, 0.0]]),  # 1+2+3, 2+3, 3 | 4+5, 5 (the 9s are padding)
        (0.5, [[2.75, 3.5, 3.0, 0.0], [6.5, 5.0, 0.0, 0.0]]),  # 3; 2+0.5*3; 1+0.5*3.5 | 5; 4+0.5*5
        (0.0, [[1.0, 2.0, 3.0, 0.0], [4.0, 5.0, 0.0, 0.0]]),  # no future
    ],
    ids=["gamma=1", "gamma=0.5", "gamma=0"],
)
def test_returns_to_go_values(gamma, expected):
    close(core.returns_to_go(TR, TR_MASK, gamma), expected)


def test_masked_whiten_values():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, 100.0, 100.0]])
    # valid 1..5: mean 3, sum of squares 4+1+0+1+4 = 10, unbiased var 10/4 = 2.5, sqrt(2.5 + 1e-8) = 1.58113884
    # 2/1.58113884 = 1.26491106, 1/1.58113884 = 0.63245553
    expected = [[-1.26491106, -0.63245553, 0.0, 0.0], [0.63245553, 1.26491106, 0.0, 0.0]]
    close(core.masked_whiten(x, TR_MASK), expected)
    # shift_mean=False adds the mean 3 back on valid tokens
    expected = [[1.73508894, 2.36754447, 3.0, 0.0], [3.63245553, 4.26491106, 0.0, 0.0]]
    close(core.masked_whiten(x, TR_MASK, shift_mean=False), expected)


# Non-contiguous groups: group 0 = rows 0, 2, 4 with rewards 1, 2, 3; group 1 = rows 1, 3 with rewards 0, 4.
REWARDS = torch.tensor([1.0, 0.0, 2.0, 4.0, 3.0])
GROUPS = torch.tensor([0, 1, 0, 1, 0])


def test_grpo_values():
    # group 0: mean 2, unbiased std sqrt((1 + 0 + 1)/2) = 1      -> (r-2)/(1+1e-6) = -0.999999, 0, 0.999999
    # group 1: mean 2, unbiased std sqrt((4 + 4)/1) = 2.82842712 -> -2/2.82842812 = -0.70710653, +0.70710653
    expected = [-0.999999, -0.70710653, 0.0, 0.70710653, 0.999999]
    close(core.grpo_advantages(REWARDS, GROUPS), expected)
    close(core.grpo_advantages(REWARDS, GROUPS, scale=False), [-1.0, -2.0, 0.0, 2.0, 1.0])  # r - mean only


def test_dr_grpo_values():
    close(core.dr_grpo_advantages(REWARDS, GROUPS), [-1.0, -2.0, 0.0, 2.0, 1.0])  # 1-2, 0-2, 2-2, 4-2, 3-2


def test_rloo_values():
    # group 0 (G=3): 1 - (2+3)/2 = -1.5, 2 - (1+3)/2 = 0, 3 - (1+2)/2 = 1.5; group 1 (G=2): 0 - 4 = -4, 4 - 0 = 4
    close(core.rloo_advantages(REWARDS, GROUPS), [-1.5, -4.0, 0.0, 4.0, 1.5])


def test_reinforce_pp_values():
    token_rewards = torch.tensor([[0.0, 1.0, 0.0], [0.0, 3.0, 7.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    # returns [[1, 1], [3, 3]]: mean 2, unbiased var (1+1+1+1)/3 = 4/3, std 1.15470054 -> +-1/1.15470054 = 0.8660254
    expected = [[-0.8660254, -0.8660254, 0.0], [0.8660254, 0.8660254, 0.0]]
    close(core.reinforce_pp_advantages(token_rewards, mask), expected)


def test_reinforce_pp_baseline_values():
    rewards = torch.tensor([1.0, 3.0, 5.0])
    groups = torch.tensor([0, 0, 1])
    mask = torch.tensor([[1, 1], [1, 0], [1, 1]])
    kl = torch.tensor([[0.2, 0.4], [0.6, 9.0], [0.0, 0.2]])
    # centred outcomes: group 0 mean 2 -> -1, +1; group 1 alone -> 5 - 5 = 0
    # token rewards (kl_coef 0.5): [-0.1, -0.2-1 = -1.2], [-0.3+1 = 0.7], [0.0, -0.1+0 = -0.1]
    # returns: [-1.3, -1.2], [0.7], [-0.1, -0.1]; sum -2.0 over 5 tokens -> mean -0.4
    # deviations -0.9, -0.8, 1.1, 0.3, 0.3; squares 0.81+0.64+1.21+0.09+0.09 = 2.84; var 2.84/4 = 0.71
    # std 0.84261498: -0.9/std = -1.06810349, -0.8/std = -0.94942533, 1.1/std = 1.30545982, 0.3/std = 0.3560345
    expected = [[-1.06810349, -0.94942533], [1.30545982, 0.0], [0.3560345, 0.3560345]]
    out = core.reinforce_pp_baseline_advantages(rewards, groups, mask, kl=kl, kl_coef=0.5)
    close(out, expected)


def test_remax_values():
    token_rewards = torch.tensor([[-0.1, -0.1, 1.0], [0.0, 2.0, 5.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    baseline = torch.tensor([0.5, 2.0])
    # returns row 0: 0.8, 0.9, 1.0 minus 0.5; row 1: 2, 2 (the 5 is padding) minus 2
    expected = [[0.3, 0.4, 0.5], [0.0, 0.0, 0.0]]
    close(core.remax_advantages(token_rewards, baseline, mask), expected)


def test_process_values():
    step_rewards = [[1.0, 0.0], [0.5], [], [None, 2.0]]
    step_ends = [[0, 2], [1], [], [0, 1]]
    groups = torch.tensor([0, 0, 1, 1])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]])
    # group 0 steps 1, 0, 0.5: mean 0.5, unbiased std sqrt((0.25+0.25+0)/2) = 0.5 -> normalised 1, -1, 0 (eps = 0)
    # row 0: t=0 gets steps ending at 0 and 2 (1 + -1 = 0); t=1,2 get the step ending at 2 (-1); t=3 is padding
    # row 1: its only step normalises to 0 -> all 0; row 2: no steps -> all 0
    # group 1: the None step is excluded, leaving one valid step (2.0): nothing to compare it with -> 0
    expected = [[0.0, -1.0, -1.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    close(core.process_advantages(step_rewards, step_ends, groups, mask, eps=0.0), expected)


def test_process_values_per_kind():
    # one group; kind 0 = text steps, kind 1 = the outcome step, weighted 2 after normalisation
    rewards, ends, kinds = [[1.0, -1.0, 1.0], [1.0, 0.0]], [[0, 1, 2], [0, 1]], [[0, 0, 1], [0, 1]]
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    # kind 0: 1, -1, 1: mean 1/3, deviations 2/3, -4/3, 2/3, var (4/9 + 16/9 + 4/9) / 2 = 4/3, std 1.15470054
    #   -> 0.57735027, -1.15470054, 0.57735027
    # kind 1: 1, 0: mean 0.5, std 0.70710678 -> +-0.70710678, times 2 -> +-1.41421356
    # row 0: t0 0.57735027 - 1.15470054 + 1.41421356 = 0.83686329, t1 -1.15470054 + 1.41421356 = 0.25951302,
    #        t2 1.41421356; row 1: t0 0.57735027 - 1.41421356 = -0.83686329, t1 -1.41421356, t2 padding
    expected = [[0.83686329, 0.25951302, 1.41421356], [-0.83686329, -1.41421356, 0.0]]
    out = core.process_advantages(rewards, ends, torch.tensor([5, 5]), mask, eps=0.0, step_kinds=kinds,
                                  kind_weights=[1.0, 2.0])
    close(out, expected)
    # pooled (one kind, no weights), the same five values 1, -1, 1, 1, 0: mean 0.4, deviations .6 -1.4 .6 .6 -.4,
    # var (0.36 + 1.96 + 0.36 + 0.36 + 0.16) / 4 = 0.8, std 0.89442719; row 0: t0 (0.6 - 1.4 + 0.6) / std,
    # t1 (-1.4 + 0.6) / std, t2 0.6 / std
    pooled = core.process_advantages(rewards, ends, torch.tensor([5, 5]), mask, eps=0.0)
    close(pooled[0], [-0.2236068, -0.89442719, 0.67082039])


def test_process_per_kind_keeps_a_right_step_positive_when_most_outcomes_are_right():
    # 4 completions, each one right text step (+0.25) and an outcome step; 3 of 4 outcomes right (1.1), one 0.1.
    # Pooled, the outcomes lift the mean (0.5375) above every text step: the right steps turn negative.
    rewards = [[0.25, 1.1], [0.25, 1.1], [0.25, 1.1], [-0.25, 0.1]]
    ends, mask, groups = [[0, 1]] * 4, torch.ones(4, 2), torch.zeros(4, dtype=torch.long)
    pooled = core.process_advantages(rewards, ends, groups, mask)
    per_kind = core.process_advantages(rewards, ends, groups, mask, step_kinds=[[0, 1]] * 4)
    text_step = lambda adv: adv[:, 0] - adv[:, 1]  # the text step's own share of the first token's advantage
    assert (text_step(pooled)[:3] < 0).all()
    assert (text_step(per_kind)[:3] > 0).all() and text_step(per_kind)[3] < 0


def test_process_default_eps():
    # steps 0 and 1 in one group: mean 0.5, std sqrt(0.5) = 0.70710678 -> -+0.5/(0.70710678 + 1e-6) = -+0.70710578
    out = core.process_advantages([[0.0], [1.0]], [[1], [0]], torch.tensor([3, 3]), torch.ones(2, 2))
    close(out, [[-0.70710578, -0.70710578], [0.70710578, 0.0]])


def test_gae_values():
    token_rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.5, 0.5], [1.0, 0.5, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    # row 0: V_next = 0.5, 0.5, 0 (episode ends) -> delta = 0, 0, 1-0.5 = 0.5
    #        A (gamma 1, lam 0.5) = 0 + 0.5*(0 + 0.5*0.5) = 0.125, 0 + 0.5*0.5 = 0.25, 0.5; returns A+V = .625, .75, 1
    # row 1: V = 1, 0.5 (9 is padding), V_next = 0.5, 0 -> delta = 0+0.5-1 = -0.5, 1+0-0.5 = 0.5
    #        A = -0.5 + 0.5*0.5 = -0.25, 0.5; returns 0.75, 1.0
    # whitening A = .125, .25, .5, -.25, .5: mean 0.225, unbiased var 0.3875/4 = 0.096875, std 0.31124749
    # -0.1/std = -0.32128771, 0.025/std = 0.08032193, 0.275/std = 0.88354122, -0.475/std = -1.52611665
    adv, returns = core.gae_advantages(token_rewards, values, mask, gamma=1.0, lam=0.5)
    close(adv, [[-0.32128771, 0.08032193, 0.88354122], [-1.52611665, 0.88354122, 0.0]])
    close(returns, [[0.625, 0.75, 1.0], [0.75, 1.0, 0.0]])


def test_gae_gamma_below_one():
    token_rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.5, 0.5]])
    # gamma 0.5, lam 1: delta = 0 + 0.5*0.5 - 0.5 = -0.25, -0.25, 1 + 0 - 0.5 = 0.5
    # A = 0.5, -0.25 + 0.5*0.5 = 0, -0.25 + 0.5*0 = -0.25 -> returns = A + V = 0.25, 0.5, 1.0 (= discounted returns)
    _, returns = core.gae_advantages(token_rewards, values, torch.ones(1, 3), gamma=0.5, lam=1.0)
    close(returns, [[0.25, 0.5, 1.0]])


LOSS = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, NAN, NAN], [7.0, 7.0, 7.0, 7.0]])
LOSS_MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]])


@pytest.mark.parametrize(
    "mode, kwargs, expected",
    [
        ("grpo", {}, 6.5 / 3),  # row means (1+2+3)/3 = 2, (4+5)/2 = 4.5, empty row 0 -> (2 + 4.5 + 0)/3
        ("dr_grpo", {}, 15 / 12),  # (1+2+3+4+5) / (B=3 * T=4)
        ("dr_grpo", {"max_completion_length": 10}, 0.5),  # 15 / (3 * 10)
        ("dapo", {}, 3.0),  # 15 / 5 valid tokens
        ("dapo", {"num_items_in_batch": 10}, 1.5),  # 15 / 10
    ],
    ids=["grpo", "dr_grpo", "dr_grpo-max_len", "dapo", "dapo-num_items"],
)
def test_aggregate_loss_values(mode, kwargs, expected):
    out = core.aggregate_loss(LOSS, LOSS_MASK, mode, **kwargs)
    assert out.dim() == 0
    assert out.item() == pytest.approx(expected)


def test_registry():
    assert core.get_estimator("grpo") is core.grpo_advantages
    assert core.get_estimator("gae") is core.gae_advantages
    assert core.estimator_names() == sorted(core.ESTIMATORS)
    assert set(core.estimator_names()) == {
        "grpo",
        "dr_grpo",
        "rloo",
        "reinforce_pp",
        "reinforce_pp_baseline",
        "remax",
        "process",
        "gae",
    }


@pytest.mark.parametrize(
    ("rewards_per_func", "expected"),
    [
        ([[1.0, 2.0]], [1.0 * 0.5 + 2.0 * 0.25]),  # every function scored
        ([[1.0, float("nan")]], [0.5]),  # one abstained: left out of the sum
        ([[float("nan"), float("nan")]], [float("nan")]),  # all abstained: no reward, not 0
        ([[0.0, 0.0], [float("nan"), 4.0]], [0.0, 1.0]),  # rows are independent
    ],
)
def test_weighted_rewards_by_hand(rewards_per_func, expected):
    from trl_plus.core import weighted_rewards

    out = weighted_rewards(torch.tensor(rewards_per_func), torch.tensor([0.5, 0.25]))
    torch.testing.assert_close(out, torch.tensor(expected), equal_nan=True)
