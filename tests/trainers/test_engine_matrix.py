"""Every built-in estimator (gae through PPOTrainer, which owns the critic) x dynamic sampling on/off x KL in the reward on/off: one training step on the tiny model,
and the advantages that reach the loss equal the core function on the same rewards."""

import math

import pytest
import torch

from tests.conftest import completion_logps
from trl_plus import PlusGRPOConfig, PlusGRPOTrainer, PPOConfig, PPOTrainer, core
from trl_plus.engine.process_rewards import local_step_rows

G = 4
# 2 groups of 4 (cycled for every round); both groups have a spread in the reward, so dynamic sampling keeps them.
TEXTS = ["7", "77", "a", "777", "x7", "b", "7777", "77x"]
KL = 0.05


def sevens(completions, **kwargs):
    return [float(c.count("7")) for c in completions]


def last_step(completions, **kwargs):
    """A process reward: one step, ending at the last character, rewarded with the count of 7s."""
    return [[(len(c) - 1, float(c.count("7")))] if c else [] for c in completions]


last_step.process_reward = True

ESTIMATORS = ["grpo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "remax", "process", "raft", "gae"]
LAM = 0.9


def expected_advantages(name, trainer, out, kl, greedy):
    """The core function on the same rewards (one process: the gathered rows are the local rows)."""
    rewards = trainer.total_rewards()
    mask = out["completion_mask"]
    groups = torch.arange(len(rewards)) // G
    coef = KL if kl is not None else 0.0
    seq = rewards if kl is None else rewards - coef * torch.where(mask.bool(), kl, 0.0).sum(1)
    if name == "grpo":
        return core.grpo_advantages(seq, groups, eps=1e-4)
    if name == "dr_grpo":
        return core.dr_grpo_advantages(seq, groups)
    if name == "rloo":
        return core.rloo_advantages(seq, groups)
    if name == "reinforce_pp":
        return core.reinforce_pp_advantages(core.token_level_rewards(rewards, mask, kl, coef), mask)
    if name == "reinforce_pp_baseline":
        return core.reinforce_pp_baseline_advantages(rewards, groups, mask, kl, coef)
    if name == "remax":
        return core.remax_advantages(core.token_level_rewards(rewards, mask, kl, coef), greedy[0], mask)
    if name == "gae":  # the critic's own values of the batch, recomputed here
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        attention = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        with torch.no_grad(), trainer.critic.active():
            values = trainer.critic.values(ids, attention, mask.size(1)) * mask
        return core.gae_advantages(core.token_level_rewards(rewards, mask, kl, coef), values, mask, 1.0, LAM)[0]
    if name == "process":
        rows = local_step_rows(trainer, trainer._scored)
        adv = core.process_advantages([r[1] for r in rows], [r[0] for r in rows], groups, mask)
        if kl is not None:
            adv = adv + core.returns_to_go(torch.where(mask.bool(), -coef * kl, 0.0), mask)
        return adv
    # raft: the best of each group by reward, ties to the shorter, then the first
    lengths = mask.sum(1).tolist()
    kept = torch.zeros(len(seq))
    for g in range(len(seq) // G):
        rows = range(g * G, (g + 1) * G)
        kept[min(rows, key=lambda i: (-seq[i].item(), lengths[i], i))] = 1.0
    return kept


@pytest.mark.parametrize("kl_in_reward", [False, True], ids=["no-kl", "kl"])
@pytest.mark.parametrize("name", ESTIMATORS)
def test_every_estimator_with_every_part(tiny_model_dir, addition_dataset, fast_args, pin, name, kl_in_reward):
    config, trainer_class, extra = (PPOConfig, PPOTrainer, {"lam": LAM}) if name == "gae" else (
        PlusGRPOConfig, PlusGRPOTrainer, {})  # gae needs the critic: PPO's preset
    args = config(**fast_args(advantage_estimator=name, per_device_train_batch_size=8, max_steps=1,
                              kl_in_reward_coef=KL if kl_in_reward else 0.0, **extra))
    reward = [sevens] if name != "process" else [last_step]
    trainer = trainer_class(model=tiny_model_dir, reward_funcs=reward, args=args, train_dataset=addition_dataset())
    assert (trainer.ref_model is not None) == kl_in_reward  # built only for the KL in the reward (beta = 0)
    pin(trainer, TEXTS)
    if kl_in_reward:  # move the policy away from the reference, so the KL is not 0
        torch.manual_seed(0)
        with torch.no_grad():
            for p in trainer.model.parameters():
                p.add_(0.05 * torch.randn_like(p))
    greedy = []
    if name == "remax":
        original = trainer.greedy_baseline
        trainer.greedy_baseline = lambda n: greedy.append(original(n)[0]) or original(n)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    batch = next(iter(trainer.get_train_dataloader()))
    for dynamic_sampling in (False, True):
        trainer.args.dynamic_sampling = dynamic_sampling
        greedy.clear()
        out = trainer._generate_and_score_completions(batch)
        kl = None
        if kl_in_reward:
            kl = core.kl_penalty(completion_logps(trainer.model, out), out["ref_per_token_logps"], "k1")
            assert kl[out["completion_mask"].bool()].abs().sum() > 1e-3
        expected = expected_advantages(name, trainer, out, kl, greedy)
        torch.testing.assert_close(out["advantages"].float(), expected.float(), atol=2e-4, rtol=1e-3)
        if dynamic_sampling:
            assert trainer._metrics["train"]["dapo/groups_kept"][-1] == 2
        # one training step on what reached the loss: finite, and it moves the parameters
        trainer.model.zero_grad()
        loss = trainer._compute_loss(trainer.model, out)
        assert math.isfinite(loss.item())
        loss.backward()
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
