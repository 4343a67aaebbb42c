"""Edge tables and properties of trl_plus.core."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trl_plus import core

NAN = math.nan
EPS = 1e-6
# (r - mean) / (std + eps) of a group whose std is 1: what grpo gives -1, 0, +1 in a group of {1, 2, 3}.
SINGLE = 1.0 / (1.0 + EPS)


def close(actual, expected, atol=1e-6):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), atol=atol, rtol=0)


# id: (rewards, group_ids, grpo, dr_grpo, rloo), the expected values worked out by hand.
GROUP_TABLE = {
    # 0.1 three times: the float mean need not equal 0.1, yet the advantage must be exactly 0
    "all-equal-group": ([0.1, 0.1, 0.1], [0, 0, 0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
    # group 1 = {5}: one member has nothing to be compared with -> 0 for every estimator (as TRL)
    "single-sample-group": (
        [1.0, 2.0, 3.0, 5.0],
        [0, 0, 0, 1],
        [-SINGLE, 0.0, SINGLE, 0.0],
        [-1.0, 0.0, 1.0, 0.0],
        [-1.5, 0.0, 1.5, 0.0],
    ),
    # NaNs left out: stats of {1, 3}: mean 2, std sqrt(2) -> -+1/1.41421456 = -+0.70710628; rloo 2*(r-2)
    "nan-members": (
        [1.0, NAN, 3.0, NAN],
        [0, 0, 0, 0],
        [-0.70710628, 0.0, 0.70710628, 0.0],
        [-1.0, 0.0, 1.0, 0.0],
        [-2.0, 0.0, 2.0, 0.0],
    ),
    # group 4 has no scored member: 0, no NaN; group 9 = {1, 3} as above
    "all-nan-group": (
        [NAN, NAN, 1.0, 3.0],
        [4, 4, 9, 9],
        [0.0, 0.0, -0.70710628, 0.70710628],
        [0.0, 0.0, -1.0, 1.0],
        [0.0, 0.0, -2.0, 2.0],
    ),
    # a NaN leaves a single valid member: no group signal -> 0
    "nan-leaves-one": ([NAN, 4.0], [0, 0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]),
    # one group for the whole batch: mean 2.5, std sqrt(5/3) = 1.29099445 -> 1.5/(std+eps) = 1.16189410,
    # 0.5/(std+eps) = 0.38729803; rloo 4/3*(r - 2.5) = -2, -2/3, 2/3, 2
    "one-group-per-batch": (
        [1.0, 2.0, 3.0, 4.0],
        [7, 7, 7, 7],
        [-1.1618941, -0.38729803, 0.38729803, 1.1618941],
        [-1.5, -0.5, 0.5, 1.5],
        [-2.0, -2 / 3, 2 / 3, 2.0],
    ),
    "every-row-own-group": ([1.0, -2.0], [0, 1], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]),
}


@pytest.mark.parametrize("case", GROUP_TABLE.values(), ids=GROUP_TABLE.keys())
def test_group_estimator_edges(case):
    rewards, groups, grpo, dr_grpo, rloo = case
    r, g = torch.tensor(rewards), torch.tensor(groups)
    for fn, expected in (
        (core.grpo_advantages, grpo),
        (core.dr_grpo_advantages, dr_grpo),
        (core.rloo_advantages, rloo),
    ):
        out = fn(r, g)
        assert not out.isnan().any(), fn.__name__
        close(out, expected)
        # "exactly 0", not a rounding residue
        assert (out[torch.tensor(expected) == 0] == 0).all(), fn.__name__


def test_grpo_zero_variance_group_is_exact_zero_even_without_eps():
    # eps = 0 would divide 0 by std 0; the all-equal group must still give exactly 0, never NaN
    out = core.grpo_advantages(torch.tensor([0.1, 0.1, 0.1, 0.7]), torch.tensor([0, 0, 0, 1]), eps=0.0)
    assert out[:3].eq(0).all() and not out.isnan().any()


# The rows of these inputs can be selected, so that a result with an all-padding row can be compared with the
# result of the same batch without that row.
MASK = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 1, 1]])
TOKEN_REWARDS = torch.tensor([[0.0, 1.0, 5.0], [NAN, 2.0, 3.0], [1.0, 0.0, 2.0]])
STEPS = ([[1.0], [2.0], [0.0, 3.0]], [[1], [1], [0, 2]])
ROW_FUNCTIONS = {
    "token_level_rewards": lambda i: core.token_level_rewards(
        torch.tensor([1.0, 2.0, 3.0])[i], MASK[i], kl=torch.ones(3, 3)[i], kl_coef=0.1
    ),
    "returns_to_go-gamma<1": lambda i: core.returns_to_go(TOKEN_REWARDS[i], MASK[i], 0.9),
    "masked_whiten": lambda i: core.masked_whiten(TOKEN_REWARDS[i], MASK[i]),
    "reinforce_pp": lambda i: core.reinforce_pp_advantages(TOKEN_REWARDS[i], MASK[i]),
    "reinforce_pp_baseline": lambda i: core.reinforce_pp_baseline_advantages(
        torch.tensor([1.0, 2.0, 4.0])[i], torch.tensor([0, 0, 0])[i], MASK[i]
    ),
    "remax": lambda i: core.remax_advantages(TOKEN_REWARDS[i], torch.tensor([0.5, 0.5, 0.5])[i], MASK[i]),
    "process": lambda i: core.process_advantages(
        [STEPS[0][j] for j in i], [STEPS[1][j] for j in i], torch.tensor([0, 0, 0])[i], MASK[i]
    ),
    "gae": lambda i: core.gae_advantages(TOKEN_REWARDS[i], torch.ones(3, 3)[i], MASK[i], 0.9, 0.95)[0],
    "gae-returns": lambda i: core.gae_advantages(TOKEN_REWARDS[i], torch.ones(3, 3)[i], MASK[i], 0.9, 0.95)[1],
}


# A row's reward (or steps) still counts in its group's statistics when its mask is empty, as in TRL, where
# `mask_truncated_completions` zeroes the mask of a truncated completion but keeps its reward in the group baseline.
GROUP_COUPLED = {"reinforce_pp_baseline", "process"}


@pytest.mark.parametrize("name", ROW_FUNCTIONS)
def test_all_zero_mask_row_is_harmless(name):
    fn = ROW_FUNCTIONS[name]
    out = fn([0, 1, 2])
    assert out.shape == (3, 3)
    assert torch.isfinite(out).all()
    assert out[MASK == 0].eq(0).all()  # the empty row and every other padding position
    if name not in GROUP_COUPLED:
        # the empty row (whose token rewards are not even zero) leaves the token statistics of the others alone
        torch.testing.assert_close(out[[0, 2]], fn([0, 2]))


@pytest.mark.parametrize(
    "mask, expected",
    [
        ([[0, 0, 0]], [[0.0, 0.0, 0.0]]),  # n = 0: nothing to whiten
        ([[0, 1, 0]], [[0.0, 0.0, 0.0]]),  # n = 1: the single value minus its own mean
    ],
    ids=["n=0", "n=1"],
)
def test_masked_whiten_degenerate(mask, expected):
    out = core.masked_whiten(torch.tensor([[3.0, 4.0, 5.0]]), torch.tensor(mask))
    assert out.tolist() == expected


def test_aggregate_loss_all_padding():
    loss, mask = torch.ones(2, 3), torch.zeros(2, 3)
    for mode in core.LOSS_MODES:
        assert core.aggregate_loss(loss, mask, mode).item() == 0.0


@pytest.mark.parametrize(
    "gamma, expected",
    [
        # returns of rewards [1, 1, 1]: 1 + 0.5*(1 + 0.5*1) = 1.75, 1.5, 1; mean 1.41666667,
        # unbiased var (0.33333^2 + 0.08333^2 + 0.41667^2)/2 = 0.14583333, std 0.38188131
        (0.5, [[0.87287153, 0.21821788, -1.09108941]]),
        # 1 + 0.9*1.9 = 2.71, 1.9, 1; mean 1.87, var (0.84^2 + 0.03^2 + 0.87^2)/2 = 0.7317, std 0.85539465
        (0.9, [[0.98200287, 0.03507153, -1.0170744]]),
    ],
    ids=["gamma=0.5", "gamma=0.9"],
)
def test_reinforce_pp_gamma_below_one(gamma, expected):
    close(core.reinforce_pp_advantages(torch.ones(1, 3), torch.ones(1, 3), gamma), expected)


# ---------------------------------------------------------------------------------------------------------------------
# Properties

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def grouped_rewards(draw):
    size = draw(st.integers(1, 16))
    groups = draw(st.lists(st.integers(0, 4), min_size=size, max_size=size))
    values = st.one_of(st.floats(-5, 5, allow_nan=False, width=32), st.just(NAN))
    rewards = draw(st.lists(values, min_size=size, max_size=size))
    return torch.tensor(rewards), torch.tensor(groups)


@SETTINGS
@given(grouped_rewards())
def test_group_advantages_sum_to_zero_within_each_group(data):
    rewards, groups = data
    valid = ~rewards.isnan()
    for fn in (core.grpo_advantages, core.dr_grpo_advantages, core.rloo_advantages):
        adv = fn(rewards, groups)
        assert not adv.isnan().any()
        assert adv[~valid].eq(0).all()
        for g in groups.unique():
            members = groups == g
            assert adv[members].double().sum().item() == pytest.approx(0.0, abs=1e-4)


@SETTINGS
@given(st.integers(2, 6), st.integers(2, 12), st.integers(0, 2**31 - 1))
def test_whitened_values_have_mean_zero_and_unit_std(batch, length, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, generator=gen, dtype=torch.float64) * 3 + 7
    lengths = torch.randint(1, length + 1, (batch,), generator=gen)
    mask = torch.arange(length)[None, :] < lengths[:, None]
    white = core.masked_whiten(x, mask)
    values = white[mask]
    if values.numel() < 2 or x[mask].std() < 1e-2:
        return
    assert values.mean().item() == pytest.approx(0.0, abs=1e-9)
    assert values.std(unbiased=True).item() == pytest.approx(1.0, abs=1e-6)
    assert white[~mask].eq(0).all()


@SETTINGS
@given(st.lists(st.floats(-10, 10, width=32), min_size=1, max_size=8), st.integers(0, 2**31 - 1))
def test_remax_is_zero_when_sample_equals_greedy(rewards, seed):
    rewards = torch.tensor(rewards)
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, 6, (len(rewards),), generator=gen)
    mask = torch.arange(5)[None, :] < lengths[:, None]
    token_rewards = core.token_level_rewards(rewards, mask)  # no KL
    assert core.remax_advantages(token_rewards, rewards, mask).eq(0).all()


@SETTINGS
@given(st.lists(st.tuples(st.floats(-3, 3, width=32), st.integers(0, 7), st.integers(0, 2)), min_size=1, max_size=10))
def test_single_step_process_advantage_is_the_normalised_step_reward(rows):
    step_rewards = [[r] for r, _, _ in rows]
    ends = [[e] for _, e, _ in rows]
    groups = torch.tensor([g for _, _, g in rows])
    mask = torch.ones(len(rows), 8)
    adv = core.process_advantages(step_rewards, ends, groups, mask)
    # one step per completion: normalising the steps of a group is normalising its outcome rewards
    normalised = core.grpo_advantages(torch.tensor([r for r, _, _ in rows]), groups)
    for i, (_, end, _) in enumerate(rows):
        torch.testing.assert_close(adv[i, : end + 1], normalised[i].expand(end + 1), atol=1e-5, rtol=0)
        assert adv[i, end + 1 :].eq(0).all()


def literal_recursion(x, mask, discount):
    """The spec's recursion, one token at a time in float64, as the reference for long sequences."""
    out = torch.zeros(x.shape, dtype=torch.float64)
    for b in range(x.shape[0]):
        running = 0.0
        for t in reversed(range(x.shape[1])):
            running = (float(x[b, t]) if mask[b, t] else 0.0) + discount * running
            out[b, t] = running if mask[b, t] else 0.0
    return out


@pytest.mark.parametrize("length", [63, 64, 150], ids=["T=63", "T=64", "T=150"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.97, 1.0])
def test_returns_to_go_matches_literal_recursion_across_blocks(length, gamma):
    # The implementation solves the recursion in blocks of 64 tokens; these lengths cross, meet and miss a boundary.
    gen = torch.Generator().manual_seed(length)
    x = torch.randn(3, length, generator=gen, dtype=torch.float64)
    mask = torch.arange(length)[None, :] < torch.tensor([length, length // 2, 1])[:, None]
    expected = literal_recursion(x, mask, gamma)
    torch.testing.assert_close(core.returns_to_go(x, mask, gamma), expected, atol=1e-10, rtol=1e-10)
    # GAE's advantage is the same recursion on the TD errors, with discount gamma * lam
    values = torch.randn(3, length, generator=gen, dtype=torch.float64)
    v = values * mask
    delta = x + gamma * torch.nn.functional.pad(v[:, 1:], (0, 1)) - v
    _, returns = core.gae_advantages(x, values, mask, gamma=gamma, lam=0.9)
    torch.testing.assert_close(returns, literal_recursion(delta, mask, gamma * 0.9) + v, atol=1e-10, rtol=1e-10)


# ---------------------------------------------------------------------------------------------------------------------
# Gradients: the KL estimators and the loss aggregation sit inside losses, so they must be differentiable; the others
# are usually applied to detached tensors but stay differentiable too (no in-place op breaks autograd).


def test_k3_gradient_by_hand():
    logp = torch.tensor([0.0, -0.5, 1.0], requires_grad=True)  # d = 0, -0.5, 1 against ref 0
    core.kl_penalty(logp, torch.zeros(3), "k3").sum().backward()
    # d/dd (exp(-d) - 1 + d) = 1 - exp(-d): 1 - 1 = 0, 1 - e^0.5 = -0.64872127, 1 - e^-1 = 0.63212056
    close(logp.grad, [0.0, -0.64872127, 0.63212056])


def gradcheck(fn, *shapes):
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randn(*s, generator=gen, dtype=torch.float64, requires_grad=True) for s in shapes]
    assert torch.autograd.gradcheck(fn, inputs, fast_mode=True)  # a random projection of the Jacobian


LOSS_MASK_3x4 = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
MASK_2x70 = torch.arange(70)[None, :] < torch.tensor([70, 40])[:, None]  # crosses the 64-token block
GRAD_CASES = {
    **{f"kl_penalty-{e}": (lambda a, b, e=e: core.kl_penalty(a, b, e), (3, 4), (3, 4)) for e in core.KL_ESTIMATORS},
    **{
        f"aggregate_loss-{m}": (lambda a, m=m: core.aggregate_loss(a, LOSS_MASK_3x4, m), (3, 4))
        for m in core.LOSS_MODES
    },
    "masked_whiten": (lambda a: core.masked_whiten(a, LOSS_MASK_3x4), (3, 4)),
    "returns_to_go-blocked": (lambda a: core.returns_to_go(a, MASK_2x70, 0.9), (2, 70)),
    "gae": (lambda r, v: core.gae_advantages(r, v, MASK_2x70, 0.99, 0.9), (2, 70), (2, 70)),
}


@pytest.mark.parametrize("case", GRAD_CASES.values(), ids=GRAD_CASES.keys())
def test_gradients(case):
    fn, *shapes = case
    gradcheck(fn, *shapes)
