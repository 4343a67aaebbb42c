"""The GSM8K rewards on every gold solution of GSM8K (train + test).

By default the rows are the committed sample (tests/data/gsm8k, 607 rows); with `TRL_PLUS_GSM8K_DIR`
set they are the full dataset (8,792 rows), checked against the full set's own counts.
"""

from __future__ import annotations

import json

import pytest

import reward_fns
from reward_fns import extract_answer, extract_gold, normalize_number, to_training_format

# Rows, and gold answers written with thousands commas ("1,080"), in each data set.
COUNTS = {"sample": (306 + 301, 4), "full": (7473 + 1319, 93)}


@pytest.fixture(scope="module")
def rows(gsm8k_dir) -> list[dict]:
    files = [gsm8k_dir / "train.jsonl", gsm8k_dir / "test.jsonl"]
    return [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def counts(gsm8k_is_full) -> tuple[int, int]:
    return COUNTS["full" if gsm8k_is_full else "sample"]


def _wrong_number(gold: str) -> str:
    # All GSM8K golds are integers (some written "1,080"); any other integer is wrong.
    return str(int(normalize_number(gold)) + 1)


def test_dataset_is_complete(rows, counts):
    n_rows, n_commas = counts
    assert len(rows) == n_rows
    golds = [extract_gold(r["answer"]) for r in rows]
    assert all(g is not None for g in golds)
    with_commas = sum("," in g for g in golds)
    print(f"\n{len(rows)} gold answers, all readable; {with_commas} written with thousands commas")
    assert with_commas == n_commas


def test_gold_solutions_in_training_format_score_full_marks(rows):
    answers = [r["answer"] for r in rows]
    texts = [to_training_format(a) for a in answers]
    scores = {
        name: reward_fns.get(name)(None, texts, answer=answers)
        for name in (
            "gsm8k_correctness",
            "gsm8k_format",
            "gsm8k_strict_format",
            "gsm8k_soft_format",
            "gsm8k_hash_format",
            "gsm8k_trailing_penalty",
            "gsm8k_integer",
        )
    }
    counts = {
        "correctness 2.0": sum(s == 2.0 for s in scores["gsm8k_correctness"]),
        "format 0.8": sum(s == 0.8 for s in scores["gsm8k_format"]),
        "strict format": sum(s == 0.5 for s in scores["gsm8k_strict_format"]),
        "soft format": sum(s == 0.5 for s in scores["gsm8k_soft_format"]),
        "hash 0.2": sum(s == 0.2 for s in scores["gsm8k_hash_format"]),
        "no trailing text": sum(s == 0.0 for s in scores["gsm8k_trailing_penalty"]),
        "integer": sum(s == 0.5 for s in scores["gsm8k_integer"]),
    }
    print(f"\ntraining format, {len(rows)} gold solutions: {counts}")
    assert counts == {key: len(rows) for key in counts}

    # The same with the gold given already extracted ("72", "1,080") instead of raw GSM8K text.
    extracted = [extract_gold(a) for a in answers]
    assert reward_fns.gsm8k_correctness(None, texts, answer=extracted) == [2.0] * len(rows)

    # The presets: aburkov's GRPO-from-scratch total is format + correctness = 2.8; the lm-eval variant adds
    # 0.2 for ####.
    for name, total in (("gsm8k", 2.8), ("gsm8k_lm_eval", 3.0)):
        funcs, weights = reward_fns.preset(name)
        columns = [f(None, texts, answer=answers) for f in funcs]
        totals = [sum(w * c[i] for w, c in zip(weights, columns)) for i in range(len(rows))]
        assert all(t == pytest.approx(total) for t in totals), name


def test_wrong_final_number_scores_zero(rows):
    answers = [r["answer"] for r in rows]
    wrong = []
    for a in answers:
        gold = extract_gold(a)
        text = to_training_format(a)
        head, _, _ = text.rpartition(f"#### {gold}")
        wrong.append(f"{head}#### {_wrong_number(gold)}\n</answer>")
    correctness = reward_fns.gsm8k_correctness(None, wrong, answer=answers)
    zero = sum(s == 0.0 for s in correctness)
    print(f"\nwrong final number: correctness 0 on {zero}/{len(rows)}")
    assert zero == len(rows)
    # The format is untouched, so only correctness tells the two apart.
    assert reward_fns.gsm8k_strict_format(None, wrong) == [0.5] * len(rows)


def test_flexible_extraction_on_raw_gsm8k_answers(rows):
    found = exact = 0
    for r in rows:
        raw, gold = r["answer"], extract_gold(r["answer"])
        answer = extract_answer(raw)
        found += answer is not None and normalize_number(answer) == normalize_number(gold)
        exact += answer == gold
    print(f"\nraw '... #### N' form: N extracted from {found}/{len(rows)} (string-identical: {exact})")
    assert found == exact == len(rows)
    # In raw form the model "answered" without tags: full correctness, no format points.
    raws = [r["answer"] for r in rows]
    assert reward_fns.gsm8k_correctness(None, raws, answer=raws) == [2.0] * len(rows)
    assert reward_fns.gsm8k_format(None, raws) == [0.0] * len(rows)


def test_conversational_completions_score_like_strings(rows):
    sample = rows[:500]
    answers = [r["answer"] for r in sample]
    texts = [to_training_format(a) for a in answers]
    messages = [[{"role": "assistant", "content": t}] for t in texts]
    for name in ("gsm8k_correctness", "gsm8k_format", "gsm8k_strict_format", "gsm8k_hash_format"):
        fn = reward_fns.get(name)
        assert fn(None, messages, answer=answers) == fn(None, texts, answer=answers), name
