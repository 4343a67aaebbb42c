"""PPO with a learned critic and GAE through TRL's GRPOTrainer: hand-computed GAE and value loss, the critic
learning, warm-up, saving, and bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel

from tests.conftest import changed, trainable_snapshot
from tests.conftest import completion_logps as logps
from tests.trainers.test_all_algorithms import variety
from tests.trainers.test_reinforce_pp import TEXTS, scored_batch, sevens
from trl_plus import PPOConfig, PPOTrainer, register_estimator
from trl_plus.core import kl_penalty
from trl_plus.critic import clipped_value_loss, explained_variance

V0 = 0.5  # the critic's constant value in the hand-computed tests


def make(tiny_model_dir, dataset, fast_args, reward=sevens, value_model=None, **overrides):
    args = PPOConfig(**fast_args(**overrides))
    return PPOTrainer(model=tiny_model_dir, reward_funcs=reward, args=args, train_dataset=dataset,
                      value_model=value_model)


def constant_critic(trainer, value: float) -> None:
    with torch.no_grad():
        trainer.critic.head.weight.zero_()
        trainer.critic.head.bias.fill_(value)


def gae_by_hand(rewards: list[float], values: list[float], gamma: float, lam: float) -> tuple[list, list]:
    """Plain-Python GAE of one episode: delta_t = r_t + gamma V_{t+1} - V_t (V after the end is 0),
    A_t = delta_t + gamma lam A_{t+1}, returns = A + V."""
    adv, running = [0.0] * len(rewards), 0.0
    for t in reversed(range(len(rewards))):
        next_v = values[t + 1] if t + 1 < len(values) else 0.0
        running = rewards[t] + gamma * next_v - values[t] + gamma * lam * running
        adv[t] = running
    return adv, [a + v for a, v in zip(adv, values)]


def test_gae_by_hand_reference_on_paper_values():
    # r = [0, 0, 1], V = 0.5, gamma 0.9, lam 0.8: deltas [-0.05, -0.05, 0.5]; A2 = 0.5, A1 = -0.05 + 0.72 * 0.5,
    # A0 = -0.05 + 0.72 * 0.31.
    adv, ret = gae_by_hand([0.0, 0.0, 1.0], [V0] * 3, 0.9, 0.8)
    assert adv == pytest.approx([0.1732, 0.31, 0.5])
    assert ret == pytest.approx([0.6732, 0.81, 1.0])


@pytest.mark.parametrize("kl_coef", [0.0, 0.05], ids=["no_kl", "kl_in_reward"])
def test_gae_through_the_trainer_equals_the_hand_computation(tiny_model_dir, addition_dataset, fast_args, pin,
                                                              kl_coef):
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, per_device_train_batch_size=8, gamma=0.9, lam=0.8,
                   kl_coef=kl_coef)
    constant_critic(trainer, V0)
    if kl_coef:  # move the policy away from the reference so the KL penalty is not zero
        emb = trainer.model.model.embed_tokens.weight
        with torch.no_grad():
            emb.add_(0.05 * torch.randn_like(emb))
    out = scored_batch(trainer, pin)
    mask = out["completion_mask"]
    kl = kl_penalty(logps(trainer.model, out), logps(trainer.ref_model, out), "k1") if kl_coef else None
    raw, returns = torch.zeros(mask.shape), torch.zeros(mask.shape)
    for b, text in enumerate(TEXTS):
        n = int(mask[b].sum())
        rewards = [-kl_coef * float(kl[b, t]) if kl_coef else 0.0 for t in range(n)]
        rewards[-1] += float(text.count("7"))  # outcome on the last valid token (the EOS)
        adv, ret = gae_by_hand(rewards, [V0] * n, 0.9, 0.8)
        raw[b, :n], returns[b, :n] = torch.tensor(adv), torch.tensor(ret)
    flat = raw[mask.bool()]
    white = (raw - flat.mean()) / flat.std() * mask  # unbiased std, as the whitening of PPO/OpenRLHF

    torch.testing.assert_close(out["advantages"], white, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out["returns"], returns, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["old_values"], V0 * mask.float())
    if kl_coef:
        assert kl[mask.bool()].abs().max() > 1e-3  # the KL term really took part
        assert trainer._metrics["train"]["ppo/kl"][-1] == pytest.approx(float(kl[mask.bool()].mean()), rel=1e-4)
    ev = 1 - (returns - V0)[mask.bool()].var(unbiased=False) / returns[mask.bool()].var(unbiased=False)
    assert trainer._metrics["train"]["ppo/explained_variance"][-1] == pytest.approx(float(ev), abs=1e-5)


def test_value_loss_on_paper_values():
    # token 0: max((1 - 2)^2, (0.7 - 2)^2) = 1.69 (clipped); token 1: max(0, (0.3 - 0)^2) = 0.09 (clipped).
    values, old, ret = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]]), torch.tensor([[2.0, 0.0]])
    loss, frac = clipped_value_loss(values, old, ret, torch.ones(1, 2), 0.2)
    assert float(loss) == pytest.approx(0.5 * (1.69 + 0.09) / 2) and float(frac) == 1.0
    loss, frac = clipped_value_loss(values, old, ret, torch.ones(1, 2), None)
    assert float(loss) == pytest.approx(0.5 * (1.0 + 0.0) / 2) and float(frac) == 0.0
    loss, _ = clipped_value_loss(values, old, ret, torch.tensor([[1.0, 0.0]]), 0.2)  # padding is ignored
    assert float(loss) == pytest.approx(0.5 * 1.69)


def test_value_loss_through_the_trainer_equals_the_hand_computation(tiny_model_dir, addition_dataset, fast_args,
                                                                    pin):
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, per_device_train_batch_size=8, kl_coef=0.0,
                   cliprange_value=0.2)
    constant_critic(trainer, V0)
    out = scored_batch(trainer, pin)
    constant_critic(trainer, V0 + 0.5)  # the critic moved by 0.5, more than the clip range
    valid = out["completion_mask"].bool()
    R = out["returns"][valid].tolist()
    per_token = [max((V0 + 0.5 - r) ** 2, (V0 + 0.2 - r) ** 2) for r in R]
    expected = 0.5 * sum(per_token) / len(R)
    clipped = sum((V0 + 0.2 - r) ** 2 > (V0 + 0.5 - r) ** 2 for r in R) / len(R)
    assert 0 < clipped < 1  # both branches occur
    assert float(trainer.value_loss(out).detach()) == pytest.approx(expected, rel=1e-5)
    assert trainer._metrics["train"]["ppo/value_clipfrac"][-1] == pytest.approx(clipped)


def test_explained_variance_edges():
    mask = torch.ones(2, 3)
    ret = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert float(explained_variance(ret, ret, mask)) == pytest.approx(1.0)
    assert float(explained_variance(torch.full_like(ret, 3.5), ret, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(explained_variance(ret, torch.ones_like(ret), mask)) == 0.0  # Var(R) = 0: 0, not NaN


def test_critic_learns_on_a_fixed_batch(tiny_model_dir, addition_dataset, fast_args, pin):
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, per_device_train_batch_size=8, kl_coef=0.0,
                   critic_learning_rate=3e-3, cliprange_value=None)
    out = scored_batch(trainer, pin)
    before = {n: p.detach().clone() for n, p in trainer.critic.named_trainable()}
    losses = []
    for _ in range(30):
        loss = trainer.value_loss(out)
        loss.backward()
        trainer.critic.step(trainer.accelerator, max_grad_norm=1.0)
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.2 * losses[0], losses
    moved = [n for n, p in trainer.critic.named_trainable() if not torch.equal(p, before[n])]
    assert any(n.startswith("model.") for n in moved) and any(n.startswith("head.") for n in moved)
    assert not changed(trainable_snapshot(trainer.model), trainer.model)  # the policy is not the critic


@pytest.mark.e2e
def test_explained_variance_rises_over_a_short_run(tiny_model_dir, addition_dataset, fast_args, pin):
    # The demo's addition problems; a fixed set of completions so the returns are learnable from the prompt and prefix.
    trainer = make(tiny_model_dir, addition_dataset(64), fast_args, reward=sevens, max_steps=16, kl_coef=0.0,
                   critic_learning_rate=2e-2, learning_rate=1e-5, per_device_train_batch_size=8)
    pin(trainer, TEXTS)
    trainer.train()
    ev = [row["ppo/explained_variance"] for row in trainer.state.log_history if "ppo/explained_variance" in row]
    assert len(ev) == 16
    assert sum(ev[-3:]) / 3 > sum(ev[:3]) / 3 + 0.08 and min(ev[-3:]) > 0.08, ev


@pytest.mark.e2e
def test_training_moves_policy_and_critic_and_saves_the_critic(tiny_model_dir, addition_dataset, fast_args,
                                                               tmp_path):
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, reward=variety, temperature=1.0)
    policy = trainable_snapshot(trainer.model)
    critic = {n: p.detach().clone() for n, p in trainer.critic.named_trainable()}
    trainer.train()
    assert changed(policy, trainer.model)
    assert all(not torch.equal(p, critic[n]) for n, p in trainer.critic.named_trainable() if n.startswith("head."))
    logged = {k for row in trainer.state.log_history for k in row}
    assert {"ppo/value_loss", "ppo/value_clipfrac", "ppo/explained_variance", "ppo/value_mean", "ppo/returns_mean",
            "ppo/kl", "ppo/value_grad_norm"} <= logged
    assert all(math.isfinite(row["loss"]) for row in trainer.state.log_history if "loss" in row)

    out = tmp_path / "final"
    trainer.save_model(str(out))
    assert (out / "model.safetensors").is_file() and (out / "critic" / "value_head.safetensors").is_file()
    # The saved critic reloads as a value_model: same head, same values.
    again = make(tiny_model_dir, addition_dataset(), fast_args, value_model=str(out / "critic"))
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    with torch.no_grad():
        want = trainer.critic.values(ids, torch.ones_like(ids), 3)
        got = again.critic.values(ids, torch.ones_like(ids), 3)
    torch.testing.assert_close(got, want)


@pytest.mark.e2e
def test_critic_warmup_trains_only_the_critic(tiny_model_dir, addition_dataset, fast_args):
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, reward=variety, critic_warmup_steps=2,
                   temperature=1.0)
    policy = trainable_snapshot(trainer.model)
    head = trainer.critic.head.weight.detach().clone()
    trainer.train()
    assert not changed(policy, trainer.model)
    assert not torch.equal(head, trainer.critic.head.weight)


@pytest.mark.e2e
def test_ppo_epochs_and_minibatches_use_trls_num_iterations(tiny_model_dir, addition_dataset, fast_args):
    """2 epochs x 2 minibatches per rollout: the critic steps with the policy (once per optimizer step), and from the
    second pass over a rollout on its values have moved away from V_old, so the value clip can act."""
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, reward=variety, temperature=1.0, max_steps=4,
                   num_iterations=2, gradient_accumulation_steps=2, per_device_train_batch_size=4,
                   steps_per_generation=2, critic_learning_rate=0.05, cliprange_value=0.01)
    rollouts, steps = [], []
    inner = trainer.compute_advantages
    trainer.compute_advantages = lambda out: rollouts.append(1) or inner(out)
    step = trainer.critic.step
    trainer.critic.step = lambda *a, **k: steps.append(1) or step(*a, **k)
    trainer.train()
    assert len(rollouts) == 2 and len(steps) == 4 == trainer.state.global_step
    clipfrac = [row["ppo/value_clipfrac"] for row in trainer.state.log_history if "ppo/value_clipfrac" in row]
    assert len(clipfrac) == 4 and max(clipfrac) > 0


# ----- bad inputs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"lam": -0.1}, r"lam must be in \[0, 1\]"),
        ({"lam": 1.5}, r"lam must be in \[0, 1\]"),
        ({"gamma": 1.01}, r"gamma must be in \[0, 1\]"),
        ({"gamma": -1.0}, r"gamma must be in \[0, 1\]"),
        ({"kl_estimator": "k4"}, r"not a KL estimator"),
        ({"kl_coef": -0.1}, r"kl_coef must be >= 0"),
        ({"vf_coef": 0.0}, r"vf_coef must be > 0"),
        ({"cliprange_value": 0.0}, r"cliprange_value must be > 0"),
        ({"critic_learning_rate": -1e-3}, r"critic_learning_rate must be > 0"),
        ({"critic_warmup_steps": -1}, r"critic_warmup_steps must be >= 0"),
    ],
)
def test_bad_config_values_name_the_fix(fast_args, overrides, match):
    with pytest.raises(ValueError, match=match):
        PPOConfig(**fast_args(**overrides))


def test_a_critic_estimator_must_set_the_returns(tiny_model_dir, addition_dataset, fast_args, pin):
    """A user's needs_critic estimator runs in PPOTrainer with the critic's values; without returns it fails."""
    from trl_plus.engine.estimators import ESTIMATORS

    seen = {}

    @register_estimator("values_only", needs_critic=True)
    def values_only(ctx):
        seen["values"] = ctx.values
        return ctx.values.clone()

    try:
        trainer = make(tiny_model_dir, addition_dataset(), fast_args, per_device_train_batch_size=8,
                       advantage_estimator="values_only", kl_coef=0.0)
        constant_critic(trainer, V0)
        with pytest.raises(ValueError, match="'values_only' set no ctx.returns: an estimator registered with "
                                             "needs_critic=True must set the critic's targets"):
            scored_batch(trainer, pin)
    finally:
        ESTIMATORS.pop("values_only", None)
    assert torch.allclose(seen["values"], torch.full_like(seen["values"], V0))


def _llama(vocab_size: int, cls=LlamaForCausalLM):
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)
    return cls(config)


def test_critic_with_another_vocabulary_is_rejected(tiny_model_dir, addition_dataset, fast_args):
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(tiny_model_dir).vocab_size
    with pytest.raises(ValueError, match=r"does not share the policy's vocabulary .*embedding has"):
        make(tiny_model_dir, addition_dataset(), fast_args, value_model=_llama(vocab + 7))


def test_critic_with_another_tokenizer_is_rejected(tiny_model_dir, addition_dataset, fast_args, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.add_tokens(["<extra>"])
    model = _llama(len(tok) - 1)  # same number of embeddings, other token ids
    model.save_pretrained(tmp_path / "critic")
    tok.save_pretrained(tmp_path / "critic")
    with pytest.raises(ValueError, match=r"tokenizer maps tokens to other ids"):
        make(tiny_model_dir, addition_dataset(), fast_args, value_model=str(tmp_path / "critic"))


@pytest.mark.parametrize("bad", ["backbone", "module"])
def test_value_model_that_is_not_a_causal_or_token_model_is_rejected(tiny_model_dir, addition_dataset, fast_args,
                                                                     bad):
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(tiny_model_dir).vocab_size
    value_model = _llama(vocab, LlamaModel) if bad == "backbone" else torch.nn.Linear(4, 1)
    with pytest.raises(TypeError, match=r"needs a decoder-only causal or token model"):
        make(tiny_model_dir, addition_dataset(), fast_args, value_model=value_model)


def test_sequence_classifier_value_model_reuses_its_score_head(tiny_model_dir, addition_dataset, fast_args):
    from transformers import AutoConfig, LlamaForSequenceClassification

    vocab = AutoConfig.from_pretrained(tiny_model_dir).vocab_size
    reward_model = _llama(vocab, LlamaForSequenceClassification)
    reward_model.config.num_labels = 1
    reward_model.score = torch.nn.Linear(16, 1, bias=False)
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, value_model=reward_model)
    torch.testing.assert_close(trainer.critic.head.weight, reward_model.score.weight)
    assert trainer.critic.model is reward_model
