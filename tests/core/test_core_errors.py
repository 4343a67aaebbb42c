"""Bad input raises ValueError with a message naming what is wrong."""

import re

import pytest
import torch

from trl_plus import core

R3 = torch.ones(3)
G3 = torch.zeros(3, dtype=torch.long)
G4 = torch.zeros(4, dtype=torch.long)
M24 = torch.ones(2, 4)
X23 = torch.ones(2, 3)

# id: (call, the fragments the message must contain)
SHAPE_ERRORS = {
    "kl_penalty": (lambda: core.kl_penalty(M24, X23, "k1"), ["(2, 4)", "(2, 3)"]),
    "token_level_rewards-rewards": (lambda: core.token_level_rewards(R3, M24), ["(3,)", "(2, 4)"]),
    "token_level_rewards-kl": (
        lambda: core.token_level_rewards(torch.ones(2), M24, kl=X23, kl_coef=0.1),
        ["(2, 3)", "(2, 4)"],
    ),
    "returns_to_go": (lambda: core.returns_to_go(X23, M24), ["(2, 3)", "(2, 4)"]),
    "masked_whiten": (lambda: core.masked_whiten(X23, M24), ["(2, 3)", "(2, 4)"]),
    "grpo": (lambda: core.grpo_advantages(R3, G4), ["(3,)", "(4,)"]),
    "dr_grpo": (lambda: core.dr_grpo_advantages(R3, G4), ["(3,)", "(4,)"]),
    "rloo": (lambda: core.rloo_advantages(R3, G4), ["(3,)", "(4,)"]),
    "grpo-2d-rewards": (lambda: core.grpo_advantages(X23, G3), ["(2, 3)"]),
    "reinforce_pp": (lambda: core.reinforce_pp_advantages(X23, M24), ["(2, 3)", "(2, 4)"]),
    "reinforce_pp_baseline-mask": (lambda: core.reinforce_pp_baseline_advantages(R3, G3, M24), ["(3,)", "(2, 4)"]),
    "reinforce_pp_baseline-groups": (
        lambda: core.reinforce_pp_baseline_advantages(torch.ones(2), G3, M24),
        ["(2,)", "(3,)"],
    ),
    "reinforce_pp_baseline-kl": (
        lambda: core.reinforce_pp_baseline_advantages(
            torch.ones(2), torch.zeros(2, dtype=torch.long), M24, kl=X23, kl_coef=0.1
        ),
        ["(2, 3)", "(2, 4)"],
    ),
    "remax-baseline": (lambda: core.remax_advantages(M24, R3, M24), ["(3,)", "(2, 4)"]),
    "remax-token_rewards": (lambda: core.remax_advantages(X23, torch.ones(2), M24), ["(2, 3)", "(2, 4)"]),
    "gae-values": (lambda: core.gae_advantages(M24, X23, M24), ["(2, 3)", "(2, 4)"]),
    "gae-rewards": (lambda: core.gae_advantages(X23, M24, M24), ["(2, 3)", "(2, 4)"]),
    "aggregate_loss": (lambda: core.aggregate_loss(X23, M24, "grpo"), ["(2, 3)", "(2, 4)"]),
    "process-group_ids": (lambda: core.process_advantages([[1.0], [1.0]], [[0], [0]], G3, M24), ["(3,)", "(2, 4)"]),
    "process-batch": (
        lambda: core.process_advantages([[1.0]], [[0]], torch.zeros(2, dtype=torch.long), M24),
        ["1 completions", "(2, 4)"],
    ),
    "process-steps": (
        lambda: core.process_advantages([[1.0, 2.0], []], [[0], []], torch.zeros(2, dtype=torch.long), M24),
        ["has 2 steps", "has 1"],
    ),
    "process-end-out-of-range": (
        lambda: core.process_advantages([[1.0], []], [[4], []], torch.zeros(2, dtype=torch.long), M24),
        ["[0, 4)", "(2, 4)"],
    ),
    "process-kinds-rows": (
        lambda: core.process_advantages([[1.0], []], [[0], []], torch.zeros(2, dtype=torch.long), M24, step_kinds=[[0]]),
        ["`step_kinds` has 1 completions", "(2, 4)"],
    ),
    "process-kinds-steps": (
        lambda: core.process_advantages([[1.0], []], [[0], []], torch.zeros(2, dtype=torch.long), M24,
                                        step_kinds=[[0, 1], []]),
        ["`step_kinds[0]` has 2"],
    ),
    "process-kind-without-weight": (
        lambda: core.process_advantages([[1.0], [2.0]], [[0], [0]], torch.zeros(2, dtype=torch.long), M24,
                                        step_kinds=[[0], [2]], kind_weights=[1.0, 1.0]),
        ["[0, 2)", "kind_weights"],
    ),
    "mask-1d": (lambda: core.returns_to_go(torch.ones(4), torch.ones(4)), ["(4,)"]),
}


@pytest.mark.parametrize("case", SHAPE_ERRORS.values(), ids=SHAPE_ERRORS.keys())
def test_mismatched_shapes_raise_value_error_naming_them(case):
    call, fragments = case
    with pytest.raises(ValueError) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value)


def test_float_group_ids_rejected():
    with pytest.raises(ValueError, match="integer"):
        core.grpo_advantages(R3, torch.zeros(3))


def test_unknown_kl_estimator_lists_valid_ones():
    with pytest.raises(ValueError, match=re.escape("'k4'; valid estimators: k1, k2, k3, abs")):
        core.kl_penalty(X23, X23, "k4")


def test_unknown_loss_mode_lists_valid_ones():
    with pytest.raises(ValueError, match=re.escape("'bnpo'; valid modes: grpo, dr_grpo, dapo")):
        core.aggregate_loss(X23, X23, "bnpo")


def test_unknown_estimator_name_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        core.get_estimator("ppo")
    assert "'ppo'" in str(info.value)
    for name in core.estimator_names():
        assert name in str(info.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda: core.returns_to_go(X23, X23, gamma=-0.1),
        lambda: core.returns_to_go(X23, X23, gamma=1.5),
        lambda: core.reinforce_pp_advantages(X23, X23, gamma=-1.0),
        lambda: core.gae_advantages(X23, X23, X23, gamma=-0.5),
    ],
    ids=["returns_to_go-negative", "returns_to_go-above-one", "reinforce_pp-negative", "gae-negative"],
)
def test_bad_gamma(call):
    with pytest.raises(ValueError, match="gamma"):
        call()


@pytest.mark.parametrize("lam", [-0.1, 1.1], ids=["negative", "above-one"])
def test_bad_lam(lam):
    with pytest.raises(ValueError, match="lam"):
        core.gae_advantages(X23, X23, X23, lam=lam)


def test_bad_max_completion_length():
    with pytest.raises(ValueError, match="max_completion_length"):
        core.aggregate_loss(X23, X23, "dr_grpo", max_completion_length=0)


def test_bad_reducer_type():
    with pytest.raises(TypeError, match="reducer"):
        core.masked_whiten(X23, X23, reducer=3)
