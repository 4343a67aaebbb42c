"""Process-supervised GRPO (DeepSeekMath section 4.1.3) through TRL's GRPOTrainer."""

import re

import pytest
import torch

import reward_fns
from trl_plus import ProcessGRPOConfig, ProcessGRPOTrainer
from trl_plus.core import process_advantages
from trl_plus.engine.step_offsets import (
    char_to_token,
    check_steps,
    merge_steps,
    offset_char_ends,
    prefix_char_ends,
    token_char_ends,
)
from trl_plus.tiny import build_tokenizer

# Pinned completions. The tiny tokenizer has one token per character, except the five format markers.
TEXTS = ["7\n77", "a7", "<answer>7\nb", "x\n7", "77\n7\n", "", "7y7", "####\n1"]
# By hand: the token index of each line's last character, and the number of tokens before EOS.
TOKEN_ENDS = [[0, 3], [1], [1, 3], [0, 2], [1, 3], [], [2], [0, 2]]
LENGTHS = [4, 2, 4, 3, 5, 0, 3, 3]
STEP_REWARDS = [[1.0, 2.0], [1.0], [1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [], [2.0], [0.0, 0.0]]


def sevens_per_line(completions, **kwargs):
    """Process reward: each line is a step, rewarded with its number of '7's."""
    texts = [reward_fns.completion_text(c) for c in completions]
    return [[(end - 1, float(t[start:end].count("7"))) for start, end in reward_fns.split_steps(t)] for t in texts]


def ends_in_7(completions, **kwargs):
    return [float(reward_fns.completion_text(c).endswith("7")) for c in completions]


def make(tiny_model_dir, dataset, fast_args, process=sevens_per_line, reward_funcs=None, peft_config=None, **overrides):
    args = ProcessGRPOConfig(**fast_args(**overrides))
    return ProcessGRPOTrainer(tiny_model_dir, reward_funcs, args, train_dataset=dataset, peft_config=peft_config,
                              process_reward_funcs=process)


def scored_batch(trainer, pin, texts=TEXTS):
    pin(trainer, texts)
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    return trainer._generate_and_score_completions(batch)


# ----- char offset -> token index ------------------------------------------------------------------


def test_offsets_map_to_the_token_holding_the_last_character():
    tok = build_tokenizer()
    text = "<answer>7\n8</answer>"
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert len(ids) == 6  # <answer> 7 \n 8 </answer> EOS
    (ends,) = offset_char_ends(tok, [ids], [text])
    assert ends == [8, 9, 10, 11, 20, 20]  # EOS covers no character
    assert [char_to_token(ends, c) for c in (0, 7, 8, 9, 10, 11, 19)] == [0, 0, 1, 2, 3, 4, 4]


def test_fallback_when_reencoding_gives_other_ids():
    tok = build_tokenizer()
    # The model spelled the marker character by character: re-encoding would give one marker token instead.
    ids = [tok.convert_tokens_to_ids(c) for c in "<answer>7"] + [tok.eos_token_id]
    text = tok.decode(ids, skip_special_tokens=True)
    assert text == "<answer>7"
    assert offset_char_ends(tok, [ids], [text]) == [None]
    (ends,) = token_char_ends(tok, [ids], [text])
    assert ends == [1, 2, 3, 4, 5, 6, 7, 8, 9, 9] == prefix_char_ends(tok, ids, text)
    assert char_to_token(ends, 7) == 7 and char_to_token(ends, 8) == 8
    # A text that is only part of the decoded completion (a parsed response) is located inside it.
    assert prefix_char_ends(tok, ids, "7") == [0] * 8 + [1, 1]
    with pytest.raises(ValueError, match="Cannot align"):
        prefix_char_ends(tok, ids, "zzz")


def test_check_and_merge_steps():
    assert check_steps([[(0, 1), (2, None)], [(1, float("nan"))]], ["abc", "xy"], "f") == [[(0, 1.0), (2, None)],
                                                                                         [(1, None)]]
    merged = merge_steps([[[(0, 1.0), (2, 1.0)]], [[(2, 3.0), (4, None)]]], [2.0, 0.5])
    assert merged == [[(0, 2.0), (2, 3.5), (4, None)]]


@pytest.mark.parametrize(
    "result, message",
    [
        ([[(3, 1.0)]], "step offset 3 is outside the completion"),
        ([[(-1, 1.0)]], "step offset -1 is outside the completion"),
        ([[(1, 1.0), (1, 2.0)]], "strictly increasing"),
        ([[(0, 1.0)], []], "returned 2 step lists for 1 completions"),
        ([[(0, "good")]], "step reward 'good' is not a number"),
        ([[(0.5, 1.0)]], "is not an int"),
        ([[1.0]], "must be an (offset, reward) pair"),
        ({"a": 1}, "returned a dict for 1 completions"),
    ],
    ids=["past-end", "negative", "not-increasing", "wrong-count", "non-numeric", "float-offset", "not-pair", "dict"],
)
def test_bad_steps_name_the_function_and_the_fix(result, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        check_steps(result, ["abc"], "my_steps")
    assert "'my_steps'" in str(info.value)


# ----- the seam --------------------------------------------------------------------------------------


@pytest.mark.parametrize("conversational", [False, True], ids=["plain", "conversational"])
@pytest.mark.parametrize("outcome_weight,normalisation", [(0.0, "per_kind"), (0.5, "per_kind"), (0.5, "pooled")])
def test_advantages_through_the_seam_equal_the_core(tiny_model_dir, addition_dataset, fast_args, pin,
                                                    conversational, outcome_weight, normalisation):
    outcome = [ends_in_7] if outcome_weight else None
    trainer = make(tiny_model_dir, addition_dataset(conversational=conversational), fast_args, reward_funcs=outcome,
                   per_device_train_batch_size=8, outcome_weight=outcome_weight,
                   reward_weights=[2.0] if outcome else None, process_normalisation=normalisation)
    out = scored_batch(trainer, pin)
    mask = out["completion_mask"]
    assert mask.sum(1).tolist() == [n + 1 for n in LENGTHS]  # + EOS
    rewards, ends = [list(r) for r in STEP_REWARDS], [list(e) for e in TOKEN_ENDS]
    kinds = [[0] * len(r) for r in rewards]
    per_kind = normalisation == "per_kind"
    if outcome_weight:  # one more step at EOS: reward_weight * r, weighted by outcome_weight before or after pooling
        for i, text in enumerate(TEXTS):
            rewards[i].append((1.0 if per_kind else 0.5) * 2.0 * float(text.endswith("7")))
            ends[i].append(LENGTHS[i])
            kinds[i].append(1 if per_kind else 0)
    expected = process_advantages(rewards, ends, torch.arange(8) // 4, mask, step_kinds=kinds,
                                  kind_weights=[1.0, 0.5] if per_kind else None)
    if outcome_weight:  # the two normalisations differ on this batch
        pooled = process_advantages(rewards, ends, torch.arange(8) // 4, mask) if per_kind else None
        assert pooled is None or not torch.allclose(pooled, expected)
    assert out["advantages"].shape == mask.shape
    torch.testing.assert_close(out["advantages"], expected)
    assert out["advantages"].abs().sum() > 0
    metrics = trainer._metrics["train"]
    assert metrics["process/steps_per_completion"][-1] == pytest.approx(sum(map(len, STEP_REWARDS)) / 8)
    assert metrics["process/step_reward_mean"][-1] == pytest.approx(11 / 12)
    assert metrics["rewards/sevens_per_line/mean"][-1] == pytest.approx(sum(sum(r) / len(r) for r in STEP_REWARDS
                                                                            if r) / 7)
    if outcome_weight:  # TRL's reward is still the weighted outcome total
        assert metrics["reward"][-1] == pytest.approx(2.0 * 4 / 8)


def test_steps_gathered_from_two_processes_give_the_one_process_advantages(tiny_model_dir, addition_dataset,
                                                                         fast_args, pin):
    # Simulated: 2 processes with 4 completions each, vs one process with all 8. All 8 form one group (as with
    # num_generations=8), so the group statistics need the other process's steps.
    def one_group(n):
        return torch.zeros(n, dtype=torch.long)

    whole = make(tiny_model_dir, addition_dataset(), fast_args, per_device_train_batch_size=8)
    whole.group_ids = one_group
    expected = scored_batch(whole, pin)["advantages"]
    trainer = make(tiny_model_dir, addition_dataset(), fast_args)
    trainer.group_ids = one_group
    shards = []
    for rank in (0, 1):
        scored_batch(trainer, pin, TEXTS[4 * rank: 4 * rank + 4])
        shards.append(trainer._local_step_rows())
    for rank in (0, 1):
        def gather(rows, rank=rank):
            assert rows == shards[rank]
            return shards[0] + shards[1]

        trainer._gather_rows = gather
        trainer.local_rows = lambda n, rank=rank: slice(rank * n, (rank + 1) * n)
        out = scored_batch(trainer, pin, TEXTS[4 * rank: 4 * rank + 4])
        width = out["completion_mask"].size(1)
        assert width == [5, 6][rank]  # rank 0 is narrower than the global batch
        torch.testing.assert_close(out["advantages"], expected[4 * rank: 4 * rank + 4, :width])
        alone = process_advantages(STEP_REWARDS[4 * rank: 4 * rank + 4], TOKEN_ENDS[4 * rank: 4 * rank + 4],
                                   one_group(4), out["completion_mask"])
        assert not torch.allclose(out["advantages"], alone)  # the local steps alone would give other values


def test_process_rewards_in_reward_funcs_are_routed_and_weighted(tiny_model_dir, addition_dataset, fast_args, pin):
    steps = reward_fns.get("arithmetic_steps")
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, process=None, reward_funcs=[ends_in_7, steps],
                   reward_weights=[3.0, 0.5], outcome_weight=1.0)
    assert trainer.reward_func_names == ["ends_in_7", "arithmetic_steps"]
    assert trainer.reward_weights.tolist() == [3.0, 0.0]  # the adapter never enters the outcome total
    assert trainer.process_weights == [0.5]
    assert trainer.args.reward_weights == [3.0, 0.5]  # the user's config is left as given
    out = scored_batch(trainer, pin, ["1+1=2\n2+2=5", "7"] * 2)
    # steps: "1+1=2" right (+1), "2+2=5" wrong (-1), weighted by 0.5; "7" makes no claim, so it is no step;
    # outcome 3 * ends_in_7, normalised apart from the text steps (the last step of each row: kind 1)
    rewards = [[0.5, -0.5, 0.0], [3.0]] * 2
    ends, kinds = [[4, 10, 11], [1]] * 2, [[0, 0, 1], [1]] * 2
    expected = process_advantages(rewards, ends, torch.zeros(4, dtype=torch.long), out["completion_mask"],
                                  step_kinds=kinds, kind_weights=[1.0, 1.0])
    torch.testing.assert_close(out["advantages"], expected)


def test_registry_names_resolve(tiny_model_dir, addition_dataset, fast_args):
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, process=["arithmetic_steps"])
    assert trainer.reward_func_names == ["arithmetic_steps"]


# ----- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"outcome_weight": -0.5}, "outcome_weight must be a finite number >= 0"),
        ({"process_reward_weights": [float("nan")]}, "process_reward_weights must be finite"),
        ({"process_normalisation": "per_step"}, "process_normalisation must be 'per_kind' or 'pooled'"),
        ({"num_generations": 1}, "at least 2 generations"),
        ({"per_device_train_batch_size": 6, "num_generations": 4}, "divisible"),
    ],
    ids=["negative-outcome-weight", "nan-process-weight", "unknown-normalisation", "one-generation",
         "batch-not-divisible-by-G"],
)
def test_invalid_configs_say_the_fix(fast_args, overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ProcessGRPOConfig(**fast_args(**overrides))


@pytest.mark.parametrize(
    "kwargs, overrides, message",
    [
        ({"process": None}, {}, "needs at least one process reward function"),
        ({}, {"outcome_weight": 1.0}, "but no outcome reward function was given"),
        ({"reward_funcs": [ends_in_7]}, {"reward_weights": [1.0, 2.0]}, "reward_weights has 2 entries for 1"),
        ({}, {"process_reward_weights": [1.0, 2.0]}, "process_reward_weights has 2 entries for 1"),
        ({"process": [42]}, {}, "must be callables or reward_fns registry names"),
        ({"process": ["no_such_reward"]}, {}, "no_such_reward"),
    ],
    ids=["no-process-funcs", "outcome-weight-without-outcome", "reward-weights-length", "process-weights-length",
         "not-callable", "unknown-name"],
)
def test_invalid_trainer_arguments_say_the_fix(tiny_model_dir, addition_dataset, fast_args, kwargs, overrides,
                                               message):
    with pytest.raises((ValueError, TypeError, KeyError), match=re.escape(message)):
        make(tiny_model_dir, addition_dataset(), fast_args, **kwargs, **overrides)


def past_the_end(completions, **kwargs):
    return [[(len(c), 1.0)] for c in completions]


def one_list_short(completions, **kwargs):
    return [[] for _ in completions[1:]]


def crashes(completions, **kwargs):
    raise KeyError("boom")


@pytest.mark.parametrize(
    "process, error, message",
    [
        (past_the_end, ValueError, "'past_the_end', completion 0 (1 characters): step offset 1 is outside"),
        (one_list_short, ValueError, "'one_list_short' returned 3 step lists for 4 completions"),
        (crashes, KeyError, "'boom'"),  # the user's own exception, with a note naming the function
    ],
    ids=["offset-past-the-completion", "wrong-number-of-lists", "raising"],
)
def test_bad_process_rewards_fail_clearly(tiny_model_dir, addition_dataset, fast_args, pin, process, error, message):
    trainer = make(tiny_model_dir, addition_dataset(), fast_args, process=[process])
    with pytest.raises(error, match=re.escape(message)) as info:
        scored_batch(trainer, pin, ["7", "x7", "", "abc"])
    if error is KeyError:
        assert "raised by the process reward function 'crashes'" in " ".join(getattr(info.value, "__notes__", []))


# Training runs, LoRA, constant rewards and learning: tests/trainers/test_all_algorithms.py (every algorithm).
