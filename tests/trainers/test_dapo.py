"""DAPO through TRL's GRPOTrainer: defaults, overlong shaping, dynamic sampling, resume."""

import math
import os
import re
import warnings

import pytest
import torch

from tests.conftest import changed, trainable_snapshot
from trl_plus import DAPOConfig, DAPOTrainer
from trl_plus.core import grpo_advantages
from trl_plus.engine.rollout_batches import concat_rollouts
from trl_plus.trainers.base import Scored
from trl_plus.trainers.dapo import STATE_FILE

G = 4


TEXTS = ["7", "77", "a", "777"]  # pinned: every group of 4 gets these, so sevens = [1, 2, 0, 3]


def sevens(completions, **kwargs):
    return [float(c.count("7")) for c in completions]


def constant(completions, **kwargs):
    return [1.0] * len(completions)


def total_of(prompt: str) -> int:
    a, b = re.search(r"(\d+)\+(\d+)", prompt).groups()
    return int(a) + int(b)


def gold(answer: str) -> int:
    return int(answer.rsplit("####", 1)[-1])


def even_sevens(completions, answer, **kwargs):
    """Varies only for prompts whose answer is even; the scale depends on the prompt."""
    return [c.count("7") * (gold(a) % 5 + 1.0) if gold(a) % 2 == 0 else 0.0 for c, a in zip(completions, answer)]


def make(tiny_model_dir, dataset, fast_args, reward=sevens, **overrides):
    args = DAPOConfig(**fast_args(**overrides))
    return DAPOTrainer(model=tiny_model_dir, reward_funcs=reward, args=args, train_dataset=dataset)


def first_batch(trainer, pin, texts=TEXTS):
    pin(trainer, texts)
    trainer.model.train()
    return next(iter(trainer.get_train_dataloader()))


def dapo_metrics(trainer):
    return {k: v for k, v in trainer._metrics["train"].items() if k.startswith("dapo/")}


def simulate(batch, dataset, need, seed=0, cap=10):
    """The documented rule, by hand: keep the first `need` even-answer groups in round order; rounds after the first
    draw `need` prompts with torch.randperm from a generator seeded with `seed` (process 0)."""
    kept = [gold(batch[g * G]["answer"]) for g in range(need) if gold(batch[g * G]["answer"]) % 2 == 0]
    gen, rounds = torch.Generator().manual_seed(seed), 1
    while len(kept) < need and (cap == 0 or rounds < cap):
        rounds += 1
        drawn = [gold(dataset[int(i)]["answer"]) for i in torch.randperm(len(dataset), generator=gen)[:need]]
        kept += [a for a in drawn if a % 2 == 0]
    return rounds, kept[:need]


def capture_loss_inputs(trainer):
    seen, loss = [], trainer._compute_loss
    trainer._compute_loss = lambda model, inputs: (seen.append({k: v for k, v in inputs.items()}), loss(model, inputs))[1]
    return seen


# ----- config ------------------------------------------------------------------------------------------------------


def test_defaults_are_dapos(fast_args):
    args = DAPOConfig(**fast_args())
    assert (args.epsilon, args.epsilon_high, args.loss_type, args.beta) == (0.2, 0.28, "dapo", 0.0)
    assert args.dynamic_sampling and args.max_num_gen_batches == 10 and not args.dynamic_sampling_strict
    assert args.dynamic_sampling_metric is None and args.overlong_buffer_len is None


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"epsilon": 0.3, "epsilon_high": 0.2}, "epsilon_high (0.2) must be >= epsilon (0.3)"),
        ({"max_num_gen_batches": -1}, "max_num_gen_batches must be >= 0"),
        ({"overlong_buffer_len": 0}, "overlong_buffer_len (0) must be in [1, max_completion_length - 1]"),
        ({"overlong_buffer_len": 8}, "overlong_buffer_len (8) must be in [1, max_completion_length - 1]"),
        ({"scale_rewards": "batch"}, "set scale_rewards='group'"),
        ({"multi_objective_aggregation": "normalize_then_sum"}, "multi_objective_aggregation='sum_then_normalize'"),
        ({"per_device_train_batch_size": 6}, "divisible by num_generations"),
        ({"num_generations": 1, "per_device_train_batch_size": 2}, "at least 2 generations"),
    ],
    ids=["epsilon-high", "negative-cap", "zero-buffer", "buffer-too-long", "batch-std", "normalize-then-sum",
         "batch-not-divisible", "one-generation"],
)
def test_invalid_configs_say_the_fix(fast_args, overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        DAPOConfig(**fast_args(**overrides))


def test_per_process_batch_must_hold_whole_groups(fast_args, monkeypatch):
    # Two processes with 2 rows each: TRL's global check (4 % 4) passes, but each group would span both processes.
    monkeypatch.setattr(DAPOConfig, "world_size", property(lambda self: 2))
    with pytest.raises(ValueError, match=r"per_device_train_batch_size \* steps_per_generation = 2 \* 1 = 2 must be "):
        DAPOConfig(**fast_args(per_device_train_batch_size=2))
    DAPOConfig(**fast_args(per_device_train_batch_size=2, dynamic_sampling=False))  # fine without dynamic sampling


def test_trainer_rejects_bad_arguments(tiny_model_dir, addition_dataset, fast_args):
    with pytest.raises(ValueError, match=r"dynamic_sampling_metric='accuracy' is not one of .*'sevens', 'constant'"):
        make(tiny_model_dir, addition_dataset(), fast_args, reward=[sevens, constant],
             dynamic_sampling_metric="accuracy")
    with pytest.raises(ValueError, match="reward_weights has 2 values for 1 reward functions"):
        make(tiny_model_dir, addition_dataset(), fast_args, overlong_buffer_len=2, reward_weights=[1.0, 1.0])
    from trl import GRPOConfig

    with pytest.raises(TypeError, match="DAPOTrainer needs a DAPOConfig"):
        DAPOTrainer(model=tiny_model_dir, reward_funcs=sevens, args=GRPOConfig(**fast_args()),
                    train_dataset=addition_dataset())


# ----- overlong reward shaping -------------------------------------------------------------------------------------


def test_overlong_shaping_appends_trls_punishment(tiny_model_dir, addition_dataset, fast_args, pin):
    args = DAPOConfig(**fast_args(overlong_buffer_len=4, reward_weights=[2.0], per_device_train_batch_size=8))
    trainer = DAPOTrainer(model=tiny_model_dir, reward_funcs=sevens, args=args, train_dataset=addition_dataset())
    assert trainer.reward_func_names == ["sevens", "soft_overlong_punishment_reward"]
    assert trainer.reward_weights.tolist() == [2.0, 1.0]
    assert args.reward_weights == [2.0]  # the caller's config is not modified
    texts = ["7", "7777", "777777", "777777777"]  # 2, 5, 7 and 10 tokens with EOS
    batch = first_batch(trainer, pin, texts)
    trainer._generate_and_score_completions(batch)
    lengths = [len(t) + 1 for t in texts]
    l_max, l_cache = 8, 4
    formula = [0.0 if n <= l_max - l_cache else ((l_max - l_cache) - n) / l_cache if n <= l_max else -1.0
               for n in lengths]
    assert formula == [0.0, -0.25, -0.75, -1.0]
    torch.testing.assert_close(trainer._scored.rewards_per_func[:, 1], torch.tensor(formula * 2))


# ----- dynamic sampling --------------------------------------------------------------------------------------------


def test_group_spread_is_nan_aware(tiny_model_dir, addition_dataset, fast_args):
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, reward=[sevens, constant])
    nan = math.nan
    rows = [[1, 1], [1, 1], [1, 1], [1, 1],  # flat
            [0, 1], [1, 1], [nan, 1], [2, 1],  # varies in sevens
            [nan, nan], [nan, nan], [nan, nan], [nan, nan],  # unscorable
            [3, nan], [nan, nan], [nan, nan], [nan, nan]]  # one scored member
    trainer._scored = Scored([], [], [], [], torch.tensor(rows, dtype=torch.float32))
    assert trainer._groups_with_spread(16).tolist() == [False, True, False, False]
    trainer._metric_index = 1  # filter on `constant`
    assert trainer._groups_with_spread(16).tolist() == [False, False, False, False]


def test_dynamic_sampling_keeps_only_groups_with_spread(tiny_model_dir, addition_dataset, fast_args, pin):
    dataset = addition_dataset(16)
    trainer = make(tiny_model_dir, dataset, fast_args, reward=even_sevens, per_device_train_batch_size=16)
    batch = first_batch(trainer, pin)
    need = len(batch) // G
    rounds, kept = simulate(batch, dataset, need)
    assert rounds > 1  # the first batch has odd-answer groups, so new prompts must be drawn
    out = trainer._generate_and_score_completions(batch)

    assert out["prompt_ids"].shape[0] == out["completion_ids"].shape[0] == out["advantages"].shape[0] == len(batch)
    prompts = trainer.processing_class.batch_decode(out["prompt_ids"], skip_special_tokens=True)
    totals = [total_of(p) for p in prompts]
    assert totals[::G] == kept and all(t % 2 == 0 for t in totals)
    assert all(len(set(totals[g * G:(g + 1) * G])) == 1 for g in range(need))
    # Advantages of each kept group are TRL's group-normalised ones (eps 1e-4 on the unbiased std), i.e. the core's.
    for g, total in enumerate(kept):
        rewards = torch.tensor([t.count("7") * (total % 5 + 1.0) for t in TEXTS])
        expected = grpo_advantages(rewards, torch.zeros(G, dtype=torch.long), eps=1e-4)
        torch.testing.assert_close(out["advantages"][g * G:(g + 1) * G], expected, atol=1e-5, rtol=1e-5)
        assert out["advantages"][g * G:(g + 1) * G].std() > 0.5
    assert out["num_items_in_batch"].item() == out["completion_mask"].sum().item()
    assert dapo_metrics(trainer) == {"dapo/gen_rounds": [rounds], "dapo/groups_generated": [rounds * need],
                                     "dapo/groups_kept": [need], "dapo/groups_filled": [0]}


@pytest.mark.parametrize("strict", [False, True], ids=["warn", "strict"])
def test_cap_trains_on_survivors_or_raises(tiny_model_dir, addition_dataset, fast_args, pin, strict):
    dataset = addition_dataset(16)
    trainer = make(tiny_model_dir, dataset, fast_args, reward=even_sevens, per_device_train_batch_size=16,
                   max_num_gen_batches=1, dynamic_sampling_strict=strict)
    batch = first_batch(trainer, pin)
    need = len(batch) // G
    rounds, kept = simulate(batch, dataset, need, cap=1)
    assert rounds == 1 and 0 < len(kept) < need  # the cap is hit
    if strict:
        with pytest.raises(RuntimeError, match=r"max_num_gen_batches=1: only \d+ of the 4 groups .* "
                                               r"dynamic_sampling_strict=False"):
            trainer._generate_and_score_completions(batch)
        return
    with pytest.warns(UserWarning, match=rf"only {len(kept)} of the 4 groups needed"):
        out = trainer._generate_and_score_completions(batch)
    assert out["prompt_ids"].shape[0] == len(batch)
    k = len(kept) * G
    assert out["completion_mask"][k:].sum() == 0 and torch.equal(out["advantages"][k:], torch.zeros(len(batch) - k))
    assert out["completion_mask"][:k].sum() > 0
    assert out["num_items_in_batch"].item() == out["completion_mask"].sum().item()
    assert dapo_metrics(trainer) == {"dapo/gen_rounds": [1], "dapo/groups_generated": [need],
                                     "dapo/groups_kept": [len(kept)], "dapo/groups_filled": [need - len(kept)]}


def test_metric_names_one_reward_function(tiny_model_dir, addition_dataset, fast_args, pin):
    # The total reward varies (sevens), but the filter metric `constant` never does: every group is dropped.
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, reward=[sevens, constant],
                   dynamic_sampling_metric="constant", max_num_gen_batches=1)
    with pytest.warns(UserWarning, match="spread in constant"):
        out = trainer._generate_and_score_completions(first_batch(trainer, pin))
    assert out["completion_mask"].sum() == 0 and dapo_metrics(trainer)["dapo/groups_kept"] == [0]


def test_eval_mode_is_plain_grpo(tiny_model_dir, addition_dataset, fast_args, pin):
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, reward=even_sevens, per_device_train_batch_size=16)
    batch = first_batch(trainer, pin)
    trainer.model.eval()
    out = trainer._generate_and_score_completions(batch)
    prompts = trainer.processing_class.batch_decode(out["prompt_ids"], skip_special_tokens=True)
    assert [total_of(p) for p in prompts] == [gold(r["answer"]) for r in batch] and not dapo_metrics(trainer)


def test_rounds_of_different_widths_are_padded(tiny_model_dir, addition_dataset, fast_args, pin):
    # steps_per_generation=2 without accumulation: TRL computes old log-probs, which must be padded too.
    trainer = make(tiny_model_dir, addition_dataset(16), fast_args, reward=even_sevens, per_device_train_batch_size=8,
                   steps_per_generation=2)
    batch = first_batch(trainer, pin, ["7", "77", "a", "777"])
    short = trainer._generate_single_turn
    pin(trainer, ["777777", "7", "a", "77"])
    calls, long = [], trainer._generate_single_turn
    trainer._generate_single_turn = lambda *a, **k: (calls.append(1), (short if len(calls) % 2 else long)(*a, **k))[1]
    out = trainer._generate_and_score_completions(batch)
    assert len(calls) > 1 and out["completion_ids"].shape == (16, 7)
    assert out["old_per_token_logps"].shape == (16, 7)
    lengths = out["completion_mask"].sum(1)
    assert set(lengths.tolist()) <= {2, 3, 4, 7}
    padded = torch.arange(7).expand(16, 7) >= lengths.unsqueeze(1)
    assert (out["old_per_token_logps"][padded] == 0).all()
    assert (out["completion_ids"][padded] == trainer.processing_class.pad_token_id).all()


def test_concat_rollouts_pads_each_side():
    a = {"prompt_ids": torch.tensor([[5, 6]]), "prompt_mask": torch.tensor([[1, 1]]),
         "completion_ids": torch.tensor([[7]]), "completion_mask": torch.tensor([[1]]),
         "advantages": torch.tensor([1.0]), "tool_mask": torch.tensor([[1]])}
    b = {"prompt_ids": torch.tensor([[4, 5, 6]]), "prompt_mask": torch.tensor([[1, 1, 1]]),
         "completion_ids": torch.tensor([[7, 8]]), "completion_mask": torch.tensor([[1, 1]]),
         "advantages": torch.tensor([2.0]), "tool_mask": torch.tensor([[1, 0]])}
    out = concat_rollouts([a, b], pad_token_id=0)
    assert out["prompt_ids"].tolist() == [[0, 5, 6], [4, 5, 6]] and out["prompt_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]
    assert out["completion_ids"].tolist() == [[7, 0], [7, 8]] and out["completion_mask"].tolist() == [[1, 0], [1, 1]]
    assert out["tool_mask"].tolist() == [[1, 1], [1, 0]] and out["advantages"].tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="pixel_values"):
        concat_rollouts([{**a, "pixel_values": torch.zeros(1, 3)}], pad_token_id=0)


# ----- training ----------------------------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("strict", [False, True], ids=["warn", "strict"])
def test_always_flat_rewards_hit_the_cap(tiny_model_dir, addition_dataset, fast_args, pin, strict):
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, reward=constant, max_num_gen_batches=2,
                   dynamic_sampling_strict=strict)
    pin(trainer, TEXTS)
    if strict:
        with pytest.raises(RuntimeError, match="only 0 of the 1 groups needed"):
            trainer.train()
        return
    before = trainable_snapshot(trainer.model)
    with pytest.warns(UserWarning, match="hit max_num_gen_batches=2"):
        trainer.train()
    assert not changed(before, trainer.model)
    rows = [row for row in trainer.state.log_history if "loss" in row]
    assert len(rows) == 2 and all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in rows)
    assert all((r["dapo/gen_rounds"], r["dapo/groups_kept"], r["dapo/groups_filled"]) == (2, 0, 1) for r in rows)


@pytest.mark.e2e
@pytest.mark.parametrize("accumulation", [2, 1], ids=["ga2", "ga1"])
def test_accumulation_and_steps_per_generation_keep_batch_sizes(tiny_model_dir, addition_dataset, fast_args, pin,
                                                                accumulation):
    trainer = make(tiny_model_dir, addition_dataset(16), fast_args, reward=even_sevens,
                   gradient_accumulation_steps=accumulation, steps_per_generation=2)
    pin(trainer, TEXTS)
    seen = capture_loss_inputs(trainer)
    trainer.train()
    assert len(seen) == 2 * accumulation and all(s["prompt_ids"].shape[0] == 4 for s in seen)
    assert all(s["advantages"].abs().sum() > 0 for s in seen)  # zero-spread groups were replaced
    rows = [row for row in trainer.state.log_history if "dapo/groups_kept" in row]
    assert rows and all(r["dapo/groups_kept"] == 2 and r["dapo/groups_filled"] == 0 for r in rows)


# ----- resume ------------------------------------------------------------------------------------------------------


def test_sampling_state_round_trips(tiny_model_dir, addition_dataset, fast_args):
    trainer = make(tiny_model_dir, addition_dataset(16), fast_args)
    keys = trainer.train_dataset[0].keys()
    state = trainer.dynamic_sampling_state()
    first = trainer._draw_prompts(3, keys)
    assert len(first) == 3 * G and all(first[i] == first[i - i % G] for i in range(len(first)))
    assert trainer._draw_prompts(3, keys) != first
    trainer.load_dynamic_sampling_state(state)
    assert trainer._draw_prompts(3, keys) == first


@pytest.mark.e2e
def test_resume_restores_the_sampling_rng(tiny_model_dir, addition_dataset, fast_args, pin, tmp_path):
    def run(resume=None):
        trainer = make(tiny_model_dir, addition_dataset(16), fast_args, reward=even_sevens, max_steps=4,
                       save_strategy="steps", save_steps=2, output_dir=str(tmp_path / "run"))
        pin(trainer, TEXTS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.train(resume_from_checkpoint=resume)
        keys = ("reward", "dapo/gen_rounds", "dapo/groups_generated")
        return trainer, {r["step"]: tuple(r[k] for k in keys) for r in trainer.state.log_history if "reward" in r}

    first, full = run()
    ckpt = str(tmp_path / "run" / "checkpoint-2")
    saved = torch.load(os.path.join(ckpt, STATE_FILE), weights_only=True)["per_process"]
    assert len(saved) == 1 and saved[0]["generator"].dtype == torch.uint8
    resumed, tail = run(resume=ckpt)
    assert sorted(tail) == [1, 2, 3, 4] and tail == full  # steps 1-2 come from the checkpoint's trainer state
    assert torch.equal(resumed.dynamic_sampling_state()["generator"], first.dynamic_sampling_state()["generator"])
    assert sum(full[s][1] for s in (3, 4)) > 2  # steps 3-4 drew new prompts, so the RNG mattered


# Training runs, LoRA, constant rewards and learning: tests/trainers/test_all_algorithms.py (every algorithm).
