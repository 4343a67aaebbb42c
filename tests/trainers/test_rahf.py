"""RAHF (RAFT) through TRL's GRPOTrainer: selection of the kept completions, the SFT loss, training."""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.conftest import changed, trainable_snapshot
from trl_plus import RAFTConfig, RAFTTrainer, RAHFConfig, RAHFTrainer

G = 4
# Pinned: 2 groups of 4 (per_device_train_batch_size=8). Rewards (count of '7', None for "n"):
#   group 0: 2, 1, 3, 3      -> best: row 3 ("777" ties with row 2 "777x" and is shorter)
#   group 1: NaN, 0, 0, 0    -> best: row 6 ("x", the first of the shortest; the unscorable "n" is never kept)
TEXTS = ["77", "7", "777x", "777", "n", "abc", "x", "y"]


def sevens(completions, **kwargs):
    return [None if c == "n" else float(c.count("7")) for c in completions]


def constant(completions, **kwargs):
    return [1.0] * len(completions)


def make(tiny_model_dir, dataset, fast_args, reward=sevens, peft_config=None, **overrides):
    args = RAHFConfig(**fast_args(**overrides))
    return RAHFTrainer(model=tiny_model_dir, reward_funcs=reward, args=args, train_dataset=dataset,
                       peft_config=peft_config)


def scored_batch(trainer, pin, texts=TEXTS):
    pin(trainer, texts)
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    return trainer._generate_and_score_completions(batch)


def capture_outputs(trainer):
    outs = []
    original = trainer._generate_and_score_completions

    def wrapper(inputs):
        outs.append(original(inputs))
        return outs[-1]

    trainer._generate_and_score_completions = wrapper
    return outs


def completion_nll(model, out):
    """Per-row summed NLL of the completion tokens, computed independently of TRL."""
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], 1)
    attn = torch.cat([out["prompt_mask"], out["completion_mask"]], 1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
    T = out["completion_ids"].size(1)
    lp = torch.log_softmax(logits[:, -T:].float(), -1).gather(-1, out["completion_ids"].unsqueeze(-1)).squeeze(-1)
    return -(lp * out["completion_mask"]).sum(1)


# ----- selection through the seam ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "kept_rows"),
    [
        ({}, [3, 6]),
        ({"min_reward": 1.0}, [3]),  # group 1's best (0) is below the threshold
        ({"selection": "top_fraction", "keep_fraction": 0.25}, [2, 3]),  # the best 2 of 8, across prompts
        ({"selection": "top_fraction"}, [2, 3]),  # keep_fraction None = 1 / num_generations
        ({"selection": "top_fraction", "keep_fraction": 1.0}, [0, 1, 2, 3, 5, 6, 7]),  # all but the unscorable
        ({"selection": "top_fraction", "keep_fraction": 0.5, "min_reward": 2.0}, [0, 2, 3]),
    ],
    ids=["best", "min_reward", "top_quarter", "top_default", "top_all", "top_min_reward"],
)
def test_kept_completions_through_the_seam(tiny_model_dir, addition_dataset, fast_args, pin, overrides, kept_rows):
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, per_device_train_batch_size=8, **overrides)
    out = scored_batch(trainer, pin)
    expected = torch.zeros(8)
    expected[kept_rows] = 1.0
    torch.testing.assert_close(out["advantages"], expected)
    lengths = out["completion_mask"].sum(1)
    assert out["num_items_in_batch"] == lengths[kept_rows].sum()
    rewards = torch.tensor([math.nan if r is None else r for r in sevens(TEXTS)])
    metrics = trainer._metrics["train"]
    assert metrics["rahf/kept_fraction"] == [len(kept_rows) / 8]
    assert metrics["rahf/reward_kept_mean"] == [pytest.approx(rewards[kept_rows].mean().item())]
    assert metrics["rahf/reward_all_mean"] == [pytest.approx(rewards.nanmean().item())]


@pytest.mark.parametrize(("mask_truncated", "kept_row"), [(False, 0), (True, 2)], ids=["plain", "masked"])
def test_a_completion_without_trained_tokens_is_never_kept(tiny_model_dir, addition_dataset, fast_args,
                                                           mask_truncated, kept_row):
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, mask_truncated_completions=mask_truncated)
    tok = trainer.processing_class
    eos = [tok.eos_token_id]
    # Row 0 has the best reward but hits max_completion_length=8 without EOS: a truncated completion.
    ids = [tok(t)["input_ids"] + end for t, end in [("7777777x", []), ("7", eos), ("77", eos), ("a", eos)]]
    trainer._generate_single_turn = lambda prompt_ids, *args, **kwargs: (ids, None)
    trainer.model.train()
    out = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    assert out["advantages"].tolist() == [float(i == kept_row) for i in range(4)]


@pytest.mark.e2e
@pytest.mark.parametrize(("accumulation", "steps_per_generation"), [(1, None), (2, None), (2, 1)],
                         ids=["ga1", "ga2", "ga2-spg1"])
def test_loss_is_the_nll_of_exactly_the_best_completions(tiny_model_dir, addition_dataset, fast_args, pin,
                                                         accumulation, steps_per_generation):
    # ga2: one generation batch of 8 (2 prompts) split into 2 micro-batches of 4 (steps_per_generation = 2).
    # ga2-spg1: 2 generation batches of 4 (1 prompt each) accumulated into one optimizer step.
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, max_steps=1,
                   per_device_train_batch_size=8 // accumulation, gradient_accumulation_steps=accumulation,
                   steps_per_generation=steps_per_generation)
    pin(trainer, TEXTS)
    outs = capture_outputs(trainer)
    trainer.train()
    initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir)  # the weights before the step (not a deepcopy:
    # TRL patches the trainer's model in ways a copy would share)
    assert len(outs) == (2 if steps_per_generation == 1 else 1)
    expected, everything = [], []
    for out in outs:
        kept = out["advantages"].bool()
        assert kept.tolist() == ([i in (3, 6) for i in range(8)] if len(kept) == 8 else [False] * 3 + [True])
        nll, tokens = completion_nll(initial, out), out["completion_mask"].sum(1)
        expected.append(nll[kept].sum() / tokens[kept].sum())  # mean NLL per token of the best completions only
        everything.append(nll.sum() / tokens.sum())
    loss = trainer.state.log_history[0]["loss"]
    assert loss == pytest.approx((sum(expected) / len(outs)).item(), rel=1e-4)
    assert abs(loss - (sum(everything) / len(outs)).item()) > 1e-2  # training on all rows would give another value


@pytest.mark.e2e
def test_nothing_kept_gives_zero_loss_and_no_update(tiny_model_dir, addition_dataset, fast_args, pin):
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, max_steps=1, per_device_train_batch_size=8,
                   min_reward=10.0)
    pin(trainer, TEXTS)
    outs = capture_outputs(trainer)
    before = trainable_snapshot(trainer.model)
    trainer.train()
    assert outs[0]["advantages"].sum() == 0 and outs[0]["num_items_in_batch"] == 0
    row = trainer.state.log_history[0]
    assert row["loss"] == 0.0 and row["rahf/kept_fraction"] == 0.0 and row["rahf/reward_kept_mean"] is None
    assert not changed(before, trainer.model)


# ----- configuration ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"selection": "top_fraction", "keep_fraction": 0.0}, r"keep_fraction must be in \(0, 1\]"),
        ({"selection": "top_fraction", "keep_fraction": 1.5}, r"keep_fraction must be in \(0, 1\]"),
        ({"selection": "best"}, "selection='best' is unknown"),
        ({"keep_fraction": 0.5}, "set selection='top_fraction'"),
        ({"beta": 0.1}, "set beta=0.0"),
    ],
)
def test_invalid_configs_say_the_fix(fast_args, overrides, message):
    with pytest.raises(ValueError, match=message):
        RAHFConfig(**fast_args(**overrides))


def test_defaults_and_aliases(fast_args):
    args = RAHFConfig(**fast_args())
    assert (args.selection, args.keep_fraction, args.min_reward, args.beta) == ("best_per_prompt", None, None, 0.0)
    assert args.temperature == 1.0
    assert RAFTConfig is RAHFConfig and RAFTTrainer is RAHFTrainer


def test_trainer_rejects_a_plain_grpo_config(tiny_model_dir, addition_dataset, fast_args):
    from trl import GRPOConfig

    with pytest.raises(TypeError, match="needs a RAHFConfig"):
        RAHFTrainer(model=tiny_model_dir, reward_funcs=sevens, args=GRPOConfig(**fast_args()),
                    train_dataset=addition_dataset())


# ----- training ---------------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_constant_rewards_keep_the_shortest_and_train_without_nan(tiny_model_dir, addition_dataset, fast_args, pin):
    # Constant rewards are all ties: each prompt keeps its shortest completion (the first on equal length), and
    # RAHF still trains on it (SFT towards short answers). Nothing becomes NaN.
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, reward=constant)
    pin(trainer, ["abc", "d", "ef", "g"])
    outs = capture_outputs(trainer)
    before = trainable_snapshot(trainer.model)
    trainer.train()
    assert [out["advantages"].tolist() for out in outs] == [[0.0, 1.0, 0.0, 0.0]] * 2
    assert changed(before, trainer.model)
    for row in trainer.state.log_history:
        assert all(not isinstance(v, float) or math.isfinite(v) for v in row.values()), row
