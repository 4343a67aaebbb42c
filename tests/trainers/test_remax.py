"""ReMax through TRL's GRPOTrainer: the greedy baseline rollout, advantages from the core, training."""

import pytest
import torch

from tests.conftest import completion_logps as logps
from trl_plus import ReMaxConfig, ReMaxTrainer
from trl_plus.core import kl_penalty, remax_advantages, token_level_rewards

G = 4
SAMPLED = ["77", "1", "777", "x", "7a7", "", "b", "7"]  # pinned: 2 groups of 4 (per_device_train_batch_size=8)
GREEDY = ["7", "xx"]  # pinned greedy completion of the 1st and 2nd prompt


def sevens(completions, **kwargs):
    return [float(c.count("7")) for c in completions]


def share_of_digits(completions, **kwargs):
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


def constant(completions, **kwargs):
    return [1.0] * len(completions)


def make(tiny_model_dir, dataset, fast_args, reward=sevens, peft_config=None, **overrides):
    args = ReMaxConfig(**fast_args(**overrides))
    return ReMaxTrainer(model=tiny_model_dir, reward_funcs=reward, args=args, train_dataset=dataset,
                        peft_config=peft_config)


def pin_both(trainer, pin, sampled=SAMPLED, greedy=GREEDY):
    """Pin the sampled completions and, for the rollout with sampling off, the greedy ones; record the calls."""
    pin(trainer, greedy)
    greedy_fake = trainer._generate_single_turn
    pin(trainer, sampled)
    sampled_fake = trainer._generate_single_turn
    calls = []

    def fake(prompt_ids, *args, **kwargs):
        do_sample = trainer.generation_config.do_sample
        calls.append((do_sample, [list(p) for p in prompt_ids]))
        return (sampled_fake if do_sample else greedy_fake)(prompt_ids, *args, **kwargs)

    trainer._generate_single_turn = fake
    return calls


def scored_batch(trainer):
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    return trainer._generate_and_score_completions(batch)


# ----- the greedy rollout and the advantages -----------------------------------------------------------------------


def test_greedy_rollout_has_sampling_off_and_is_the_baseline(tiny_model_dir, addition_dataset, fast_args):
    scored = []

    def recorded(completions, **kwargs):
        scored.append(list(completions))
        return share_of_digits(completions)

    trainer = make(tiny_model_dir, addition_dataset(), fast_args, reward=recorded, per_device_train_batch_size=8)
    calls = []
    generate = trainer.model.generate

    def spy(*args, **kwargs):
        result = generate(*args, **kwargs)
        calls.append((kwargs["generation_config"], kwargs["input_ids"], result))
        return result

    trainer.model.generate = spy
    out = scored_batch(trainer)

    # One sampled call for the 8 rows, then one greedy call for the 2 unique prompts, same max length.
    (sampled_cfg, sampled_in, _), (greedy_cfg, greedy_in, greedy_out) = calls
    assert sampled_cfg.do_sample and not greedy_cfg.do_sample
    assert greedy_cfg.max_new_tokens == sampled_cfg.max_new_tokens == 8
    assert sampled_in.size(0) == 8 and greedy_in.size(0) == 2
    torch.testing.assert_close(greedy_in, sampled_in[::G])
    assert trainer.generation_config is sampled_cfg  # the sampling config is back
    # Greedy really is argmax decoding: every generated token (up to EOS) is the argmax after its prefix.
    with torch.no_grad():
        logits = trainer.model(input_ids=greedy_out).logits
    prompt_len, eos = greedy_in.size(1), trainer.processing_class.eos_token_id
    for row in range(2):
        for t in range(prompt_len, greedy_out.size(1)):
            assert greedy_out[row, t] == logits[row, t - 1].argmax()
            if greedy_out[row, t] == eos:
                break

    # The rewards: first the 8 samples (the training batch), then the 2 greedy completions (the baseline only).
    assert len(scored) == 2 and len(scored[0]) == 8 and len(scored[1]) == 2
    assert out["completion_ids"].size(0) == 8  # greedy completions are not trained on
    rewards = torch.tensor(share_of_digits(scored[0]))
    r_greedy = torch.tensor(share_of_digits(scored[1]))
    mask = out["completion_mask"]
    expected = remax_advantages(token_level_rewards(rewards, mask), r_greedy.repeat_interleave(G), mask)
    torch.testing.assert_close(out["advantages"], expected)

    metrics = trainer._metrics["train"]
    assert metrics["remax/greedy_reward"] == [pytest.approx(r_greedy.mean().item())]
    assert metrics["remax/advantage_mean"] == [pytest.approx(expected[mask.bool()].mean().item(), abs=1e-6)]
    # The greedy rollout left the sampled batch's generation metrics alone.
    assert metrics["completions/mean_length"] == [pytest.approx(mask.sum(1).float().mean().item())]
    assert trainer.state.num_input_tokens_seen == out["prompt_mask"].sum() + mask.sum()
    assert trainer._scored.completions == scored[0]


@pytest.mark.parametrize(("kl_coef", "estimator"), [(0.0, "k1"), (0.05, "k1"), (0.05, "k3")])
def test_advantages_through_the_seam_equal_the_core(tiny_model_dir, addition_dataset, fast_args, pin, kl_coef,
                                                    estimator):
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, per_device_train_batch_size=8, kl_coef=kl_coef,
                   kl_estimator=estimator)
    assert (trainer.ref_model is not None) == (kl_coef > 0)
    # Move the policy away from the reference so the KL term is not zero.
    with torch.no_grad():
        trainer.model.model.embed_tokens.weight.add_(0.05 * torch.randn_like(trainer.model.model.embed_tokens.weight))
    calls = pin_both(trainer, pin)
    out = scored_batch(trainer)

    assert [do_sample for do_sample, _ in calls] == [True, False]
    prompts = calls[0][1]
    assert calls[1][1] == [prompts[0], prompts[G]]  # one greedy completion per unique prompt
    mask = out["completion_mask"]
    rewards = torch.tensor(sevens(SAMPLED))
    r_greedy = torch.tensor(sevens(GREEDY)).repeat_interleave(G)
    kl = None
    if kl_coef:
        kl = kl_penalty(logps(trainer.model, out), logps(trainer.ref_model, out), estimator)
        assert kl[mask.bool()].abs().max() > 1e-3  # the KL term really took part
        assert trainer._metrics["train"]["remax/kl_reward"] == [pytest.approx(kl[mask.bool()].mean().item(), abs=1e-4)]
    expected = remax_advantages(token_level_rewards(rewards, mask, kl=kl, kl_coef=kl_coef), r_greedy, mask)
    assert out["advantages"].shape == mask.shape
    torch.testing.assert_close(out["advantages"], expected, atol=1e-4, rtol=1e-4)
    if not kl_coef:  # without KL every valid token carries r - r_greedy
        first = out["advantages"][:, 0]
        torch.testing.assert_close(first[mask[:, 0].bool()], (rewards - r_greedy)[mask[:, 0].bool()])


def test_unscorable_sample_or_greedy_gives_zero_advantage(tiny_model_dir, addition_dataset, fast_args, pin):
    def sevens_or_none(completions, **kwargs):
        return [None if c in ("x", "xx") else float(c.count("7")) for c in completions]

    trainer = make(tiny_model_dir, addition_dataset(), fast_args, reward=sevens_or_none, per_device_train_batch_size=8)
    pin_both(trainer, pin)  # sample 3 is "x", the 2nd prompt's greedy completion is "xx"
    out = scored_batch(trainer)
    adv = out["advantages"]
    assert not adv.isnan().any()
    assert (adv[3] == 0).all() and (adv[G:] == 0).all()
    assert adv[0, 0] == 2.0 - 1.0
    assert trainer._metrics["train"]["remax/greedy_reward"] == [1.0]


def test_groups_spanning_processes_get_their_greedy_reward():
    # 3 processes with 2 rows each and groups of 3: process 1 holds the end of group 0 and the start of group 1.
    plan = ReMaxTrainer.greedy_plan(3, 2, 3)
    assert plan == [[0], [0, 1], [1]]
    gathered = torch.tensor([10.0, 10.0, 11.0, 12.0, 13.0, 13.0])  # width 2, padded with repeats
    torch.testing.assert_close(ReMaxTrainer.baseline_per_group(gathered, plan, 2), torch.tensor([10.0, 12.0]))
    assert ReMaxTrainer.greedy_plan(2, 8, 4) == [[0, 1], [2, 3]]


# ----- configuration ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"num_generations": 1}, ValueError, "set num_generations=2"),
        ({"kl_estimator": "k9"}, ValueError, "kl_estimator='k9' is not a KL estimator"),
        ({"kl_coef": -0.1}, ValueError, "kl_coef must be >= 0"),
        ({"use_vllm": True}, NotImplementedError, "Set use_vllm=False"),
    ],
)
def test_invalid_configs_say_the_fix(fast_args, overrides, error, message):
    with pytest.raises(error, match=message):
        ReMaxConfig(**fast_args(**overrides))


def test_defaults(fast_args):
    args = ReMaxConfig(**fast_args())
    assert (args.kl_coef, args.kl_estimator, args.beta) == (0.0, "k1", 0.0)


def test_trainer_rejects_bad_arguments(tiny_model_dir, addition_dataset, fast_args):
    from trl import GRPOConfig

    with pytest.raises(TypeError, match="needs a ReMaxConfig"):
        ReMaxTrainer(model=tiny_model_dir, reward_funcs=sevens, args=GRPOConfig(**fast_args()),
                     train_dataset=addition_dataset())
    with pytest.raises(NotImplementedError, match="remove rollout_func"):
        ReMaxTrainer(model=tiny_model_dir, reward_funcs=sevens, args=ReMaxConfig(**fast_args()),
                     train_dataset=addition_dataset(), rollout_func=lambda prompts, trainer: {})


# Training runs, LoRA, constant rewards and learning: tests/trainers/test_all_algorithms.py (every algorithm).
