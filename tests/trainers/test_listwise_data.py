"""Listwise data: ranking and the ties rule, errors naming the row, the collator, and the dataset builder."""

import math

import pytest
import torch
from datasets import Dataset

from trl_plus.listwise_data import ListwiseCollator, ListwiseDataError, build_listwise_dataset, rank_row, to_lists

CONV = [[{"role": "assistant", "content": t}] for t in ("a", "b", "c")]


@pytest.mark.parametrize(
    "row, ranked, levels",
    [
        ({"completions": ["a", "b", "c"], "ranking": [2, 0, 1]}, ["c", "a", "b"], [0, 1, 2]),
        ({"completions": ["a", "b"], "ranking": [0, 1]}, ["a", "b"], [0, 1]),
        ({"completions": ["a", "b", "c"], "scores": [0.5, 2.0, -1.0]}, ["b", "a", "c"], [0, 1, 2]),
        # ties: equal scores share a level; inside the tie the original order is kept
        ({"completions": ["a", "b", "c", "d"], "scores": [1, 3, 1, 0]}, ["b", "a", "c", "d"], [0, 1, 1, 2]),
        ({"completions": ["a", "b"], "scores": [1.0, 1.0]}, ["a", "b"], [0, 0]),
        ({"completions": CONV, "ranking": [1, 2, 0]}, [CONV[1], CONV[2], CONV[0]], [0, 1, 2]),
    ],
    ids=["ranking", "ranking-k2", "scores", "scores-ties", "all-tied", "conversational"],
)
def test_rank_row(row, ranked, levels):
    assert rank_row(row, 0) == (ranked, levels)


@pytest.mark.parametrize(
    "row, top_k, message",
    [
        ({"completions": ["a", "b", "c"], "ranking": [0, 0, 2]}, None, "row 7: ranking [0, 0, 2] is not a permutation"),
        ({"completions": ["a", "b", "c"], "ranking": [0, 1]}, None, "is not a permutation of 0..2"),
        ({"completions": ["a", "b"], "ranking": [1, 2]}, None, "is not a permutation of 0..1"),
        ({"completions": ["a"], "ranking": [0]}, None, "row 7: has K=1 completion(s); a ranking needs K >= 2"),
        ({"completions": "ab", "ranking": [0, 1]}, None, "row 7: 'completions' must be a list"),
        ({"completions": ["a", "  "], "ranking": [0, 1]}, None, "row 7: completion 1 is empty"),
        ({"completions": [[{"role": "assistant", "content": ""}], CONV[0]], "ranking": [0, 1]}, None,
         "row 7: completion 0 is empty"),
        ({"completions": ["a", "b"], "scores": [1.0, math.nan]}, None, "row 7: scores [1.0, nan] contain NaN"),
        ({"completions": ["a", "b"], "scores": [1.0, None]}, None, "contain NaN, None, infinity"),
        ({"completions": ["a", "b"], "scores": [1.0, "2"]}, None, "or a non-number; give finite numbers"),
        ({"completions": ["a", "b"], "ranking": ["0", "1"]}, None, "ranking ['0', '1'] is not a permutation"),
        ({"completions": ["a", "b"], "ranking": [0.0, 1.0]}, None, "ranking [0.0, 1.0] is not a permutation"),
        ({"completions": ["a", "b"], "scores": [1.0]}, None, "row 7: 1 scores for 2 completions"),
        ({"completions": ["a", "b"]}, None, "row 7: give exactly one of 'ranking'"),
        ({"completions": ["a", "b"], "ranking": [0, 1], "scores": [1, 0]}, None, "give exactly one of"),
        ({"completions": ["a", "b"], "ranking": [0, 1]}, 3, "row 7: top_k=3 is larger than its K=2 completions"),
    ],
    ids=["not-permutation", "ranking-short", "ranking-out-of-range", "k1", "not-a-list", "empty", "empty-message",
         "nan-score", "none-score", "string-score", "string-ranking", "float-ranking", "score-count", "neither", "both",
         "top-k-too-large"],
)
def test_rank_row_errors_name_the_row(row, top_k, message):
    with pytest.raises(ListwiseDataError) as e:
        rank_row(row, 7, top_k)
    assert message in str(e.value)


def test_collator_flattens_rows_and_masks_padding():
    collator = ListwiseCollator(pad_token_id=0, max_length=5)
    batch = collator([
        {"prompt_ids": [1, 2], "completion_ids": [[3], [4, 5], [6, 7, 8, 9]], "levels": [0, 1, 1]},
        {"prompt_ids": [1], "completion_ids": [[3, 3], [4]], "levels": [0, 0]},
    ])
    assert batch["input_ids"].tolist() == [[1, 2, 3, 0, 0], [1, 2, 4, 5, 0], [1, 2, 6, 7, 8], [1, 3, 3, 0, 0],
                                           [1, 4, 0, 0, 0]]  # the third sequence is cut at max_length 5
    assert batch["completion_mask"].tolist() == [[0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 1], [0, 1, 1, 0, 0],
                                                 [0, 1, 0, 0, 0]]
    assert batch["attention_mask"].sum(1).tolist() == [3, 4, 5, 3, 2]
    assert batch["list_mask"].tolist() == [[True, True, True], [True, True, False]]
    assert batch["levels"].tolist() == [[0, 1, 1], [0, 0, 0]]
    assert to_lists(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), batch["list_mask"]).tolist() == [[1, 2, 3], [4, 5, 0]]


def test_collator_without_prompt_ids_for_reward_models():
    batch = ListwiseCollator(pad_token_id=9)([{"completion_ids": [[1, 2], [3]], "levels": [0, 1]}])
    assert batch["input_ids"].tolist() == [[1, 2], [3, 9]] and "completion_mask" not in batch


def digits(completions, **kwargs):
    return [float(sum(ch.isdigit() for ch in c)) for c in completions]


def is_answer(completions, answer, **kwargs):
    return [None if c == "?" else float(c == a) for c, a in zip(completions, answer)]


def test_build_listwise_dataset_scores_and_ranks_samples():
    samples = {"p1": ["1", "22", "", "x"], "p2": ["7", "7", "7", "7"], "p3": ["?", "5", "55", "5"]}

    def policy(prompts, k):
        assert k == 4
        return [samples[p] for p in prompts]

    prompts = Dataset.from_list([{"prompt": p, "answer": a} for p, a in [("p1", "22"), ("p2", "0"), ("p3", "5")]])
    ds = build_listwise_dataset(policy, prompts, [digits, is_answer], k=4, reward_weights=[1.0, 10.0], batch_size=2)
    rows = list(ds)
    # p1: the empty sample is left out; digits + 10 * correct: "1" -> 1, "22" -> 2 + 10, "x" -> 0
    assert rows[0] == {"prompt": "p1", "answer": "22", "completions": ["1", "22", "x"], "scores": [1.0, 12.0, 0.0]}
    # p2: all tied (kept by default); p3: the abstaining "?" scores 0 for that function
    assert rows[1]["scores"] == [1.0, 1.0, 1.0, 1.0]
    assert rows[2]["scores"] == [0.0, 11.0, 2.0, 11.0]
    assert rank_row(rows[2], 2) == (["5", "5", "55", "?"], [0, 0, 1, 2])
    tied_dropped = build_listwise_dataset(policy, prompts, [digits, is_answer], k=4, drop_all_tied=True)
    assert [r["prompt"] for r in tied_dropped] == ["p1", "p3"]


def test_build_listwise_dataset_samples_from_a_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompts = [{"prompt": "What is 1+1?\n"}, {"prompt": [{"role": "user", "content": "Hi"}]}]
    ds = build_listwise_dataset(model, prompts[:1], [digits], k=3, tokenizer=tok, max_new_tokens=4)
    conv = build_listwise_dataset(model, prompts[1:], ["gsm8k_format"], k=3, tokenizer=tok, max_new_tokens=4)
    for d in (ds, conv):
        row = d[0]
        assert 2 <= len(row["completions"]) <= 3 and len(row["scores"]) == len(row["completions"])
    assert isinstance(ds[0]["completions"][0], str)
    assert conv[0]["completions"][0][0]["role"] == "assistant"
    with pytest.raises(ValueError, match="needs `tokenizer`"):
        build_listwise_dataset(model, prompts[:1], [digits], k=2)
