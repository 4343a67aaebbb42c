"""REINFORCE++ and REINFORCE++-baseline through TRL's GRPOTrainer."""

import pytest
import torch

from tests.conftest import completion_logps as logps
from trl_plus import ReinforcePlusPlusConfig, ReinforcePlusPlusTrainer
from trl_plus.core import (
    dr_grpo_advantages,
    kl_penalty,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
    token_level_rewards,
)

TEXTS = ["7", "77", "a7", "777b", "x", "77777", "", "7y7"]


def sevens(completions, **kwargs):
    return [float(c.count("7")) for c in completions]


def make(tiny_model_dir, dataset, fast_args, reward=sevens, **overrides):
    args = ReinforcePlusPlusConfig(**fast_args(**overrides))
    return ReinforcePlusPlusTrainer(model=tiny_model_dir, reward_funcs=reward, args=args, train_dataset=dataset)


def scored_batch(trainer, pin, texts=TEXTS):
    pin(trainer, texts)
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    return trainer._generate_and_score_completions(batch)


@pytest.mark.parametrize("baseline", [False, True], ids=["plain", "baseline"])
def test_advantages_through_the_seam_equal_the_core(tiny_model_dir, addition_dataset, fast_args, pin, baseline):
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, per_device_train_batch_size=8,
                   num_generations=4, kl_coef=0.05, baseline=baseline)
    # Move the policy away from the reference so the KL term is not zero.
    with torch.no_grad():
        trainer.model.model.embed_tokens.weight.add_(0.05 * torch.randn_like(trainer.model.model.embed_tokens.weight))
    out = scored_batch(trainer, pin)
    mask = out["completion_mask"]
    rewards = torch.tensor([float(t.count("7")) for t in TEXTS])
    kl = kl_penalty(logps(trainer.model, out), logps(trainer.ref_model, out), "k1")
    if baseline:
        expected = reinforce_pp_baseline_advantages(rewards, torch.arange(8) // 4, mask, kl=kl, kl_coef=0.05)
    else:
        expected = reinforce_pp_advantages(token_level_rewards(rewards, mask, kl=kl, kl_coef=0.05, reward_clip=10), mask)
    assert out["advantages"].shape == mask.shape
    torch.testing.assert_close(out["advantages"], expected, atol=1e-4, rtol=1e-4)
    assert kl[mask.bool()].abs().max() > 1e-3  # the KL term really took part
    # TRL's completions table shows the advantages trained on (each row's first token), not GRPO's
    assert list(trainer._logs["advantages"])[-8:] == pytest.approx(out["advantages"][:, 0].tolist())


def test_reward_clip_limits_the_outcome(tiny_model_dir, addition_dataset, fast_args, pin):
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, per_device_train_batch_size=8, kl_coef=0.0,
                   reward_clip=2.0)
    out = scored_batch(trainer, pin)
    clipped = torch.tensor([min(float(t.count("7")), 2.0) for t in TEXTS])
    expected = reinforce_pp_advantages(token_level_rewards(clipped, out["completion_mask"]), out["completion_mask"])
    torch.testing.assert_close(out["advantages"], expected, atol=1e-5, rtol=1e-5)


def test_baseline_outcome_is_group_centred(tiny_model_dir, addition_dataset, fast_args, pin):
    # With gamma=1 and no KL, returns are the centred outcome on every token before whitening.
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, per_device_train_batch_size=8, kl_coef=0.0,
                   baseline=True)
    out = scored_batch(trainer, pin)
    rewards = torch.tensor([float(t.count("7")) for t in TEXTS])
    centred = dr_grpo_advantages(rewards, torch.arange(8) // 4)
    # group 1: [1, 2, 1, 3] mean 1.75 -> [-0.75, 0.25, -0.75, 1.25]
    torch.testing.assert_close(centred[:4], torch.tensor([-0.75, 0.25, -0.75, 1.25]))
    first_tokens = out["advantages"][:, 0]
    assert torch.argsort(first_tokens[:4]).tolist()[-1] == 3  # the best completion gets the largest advantage


@pytest.mark.e2e
def test_k2_kl_in_the_loss_adds_exactly_beta_times_k2(tiny_model_dir, addition_dataset, fast_args, pin):
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, per_device_train_batch_size=8, kl_coef=0.0,
                   baseline=True, beta=0.1, loss_kl_estimator="k2")
    with torch.no_grad():
        trainer.model.lm_head.weight.add_(0.05 * torch.randn_like(trainer.model.lm_head.weight))
    out = scored_batch(trainer, pin)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop otherwise
    with_kl = trainer._compute_loss(trainer.model, out)
    trainer.beta = 0.0
    without = trainer._compute_loss(trainer.model, out)
    mask = out["completion_mask"]
    k2 = kl_penalty(logps(trainer.model, out), out["ref_per_token_logps"], "k2")
    expected = 0.1 * (k2 * mask).sum() / mask.sum()  # aggregated like the loss (loss_type "dapo")
    assert expected > 1e-6
    torch.testing.assert_close(with_kl - without, expected, atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"kl_estimator": "k9"}, "kl_estimator='k9' is not a KL estimator"),
        ({"loss_kl_estimator": "kl"}, "loss_kl_estimator='kl' is not a KL estimator"),
        ({"kl_coef": -0.1}, "kl_coef must be >= 0"),
        ({"gamma": -0.5}, "gamma must be in [0, 1]"),
        ({"gamma": 1.5}, "gamma must be in [0, 1]"),
        ({"reward_clip": 0.0}, "reward_clip must be > 0"),
        ({"num_generations": 1}, "at least 2 generations"),
        ({"per_device_train_batch_size": 6, "num_generations": 4}, "divisible"),
    ],
    ids=["kl-estimator", "loss-kl-estimator", "negative-kl-coef", "negative-gamma", "gamma-above-1", "zero-clip",
         "one-generation", "batch-not-divisible-by-G"],
)
def test_invalid_configs_say_the_fix(fast_args, overrides, message):
    with pytest.raises(ValueError, match=__import__("re").escape(message)):
        ReinforcePlusPlusConfig(**fast_args(**overrides))
