"""GSM8K-schema data: the generator and the loaders."""

import json
import re

import pytest

from reward_fns import extract_gold
from trl_plus.data import (
    SYSTEM_PROMPT,
    DataError,
    generate_chain_problems,
    generate_problems,
    load_rows,
    read_jsonl,
    to_prompt_dataset,
    to_sft_dataset,
)

ANNOTATION = re.compile(r"<<([^=<>]+)=([^<>]+)>>")


@pytest.mark.parametrize("difficulty", [1, 2, 3, 5], ids=lambda d: f"difficulty-{d}")
def test_generator_is_deterministic_and_arithmetically_right(difficulty):
    rows = generate_problems(300, seed=7, difficulty=difficulty)
    assert rows == generate_problems(300, seed=7, difficulty=difficulty)
    assert rows != generate_problems(300, seed=8, difficulty=difficulty)
    for row in rows:
        claims = ANNOTATION.findall(row["answer"])
        assert len(claims) == max(1, difficulty - 1)
        for expr, result in claims:
            assert re.fullmatch(r"[\d+\-*]+", expr)
            assert eval(expr) == int(result)
        # the final answer is the last calculator result
        assert extract_gold(row["answer"]) == claims[-1][1]


def test_difficulty_dials_the_number_of_steps():
    assert generate_problems(1, difficulty=1)[0]["question"].startswith("What is ")
    lines = lambda d: generate_problems(1, difficulty=d)[0]["answer"].count("\n")
    assert lines(2) < lines(4) < lines(6)


def test_loader_on_real_gsm8k_test_split(gsm8k_dir, gsm8k_is_full):
    rows = load_rows(str(gsm8k_dir / "test.jsonl"))
    assert len(rows) == (1319 if gsm8k_is_full else 301)
    ds = to_prompt_dataset(rows)
    assert ds.column_names == ["prompt", "answer"] and len(ds) == len(rows)
    assert ds[0]["prompt"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert ds[0]["prompt"][1]["content"] == rows[0]["question"]
    assert ds[0]["answer"] == rows[0]["answer"]  # kept for the reward functions
    plain = to_prompt_dataset(rows[:3], conversational=False)
    assert plain[0]["prompt"].startswith(SYSTEM_PROMPT) and plain[0]["prompt"].endswith(rows[0]["question"] + "\n")
    assert "<answer>" in SYSTEM_PROMPT and "####" in SYSTEM_PROMPT


def test_sft_dataset_is_in_the_answer_format():
    ds = to_sft_dataset(generate_problems(2, seed=0), system_prompt=None, conversational=False)
    assert ds[0]["completion"].startswith("<reasoning>\n") and "#### " in ds[0]["completion"]
    assert "<<" not in ds[0]["completion"]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"question": "q"}\n', "not GSM8K-schema"),
        ('{"question": "q", "answer": "42"}\n', "no '#### N'"),
        ("question,answer\nq,42\n", "is not JSON"),
        ("", "is empty"),
        ('["q", "a"]\n', "not GSM8K-schema"),
    ],
    ids=["missing-answer", "answer-without-hashes", "csv-not-jsonl", "empty-file", "array-row"],
)
def test_bad_data_files_get_one_line_errors(tmp_path, content, message):
    path = tmp_path / "data.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=re.escape(message)) as e:
        read_jsonl(path)
    assert "\n" not in str(e.value)


def test_unknown_source_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="Unknown dataset 'mnist'"):
        load_rows("mnist")
    with pytest.raises(DataError, match="does not exist"):
        load_rows(str(tmp_path / "nope.jsonl"))
    row = json.dumps({"question": "q", "answer": "1+1=2\n#### 2"})
    (tmp_path / "ok.jsonl").write_text(row + "\n" + row + "\n")
    assert len(load_rows(str(tmp_path / "ok.jsonl"), n=1)) == 1


def test_chain_problems_chain_their_steps_left_to_right():
    rows = generate_chain_problems(400, seed=3)
    assert rows == generate_chain_problems(400, seed=3)
    assert rows != generate_chain_problems(400, seed=4)
    counts = set()
    for row in rows:
        expr = row["question"].removeprefix("What is ").removesuffix("?")
        claims = ANNOTATION.findall(row["answer"])
        counts.add(len(claims))
        # Each step starts from the previous result, and the last result is the question's value and the gold.
        previous = None
        for lhs, result in claims:
            a, op, b = re.fullmatch(r"(\d+)([+-])(\d)", lhs).groups()
            assert int(result) == (int(a) + int(b) if op == "+" else int(a) - int(b)) >= 0
            assert previous is None or int(a) == previous
            previous = int(result)
        assert previous == eval(expr) == int(extract_gold(row["answer"]))  # digits and +/- only
    assert counts == {2, 3, 4}


def test_chain_steps_are_judged_step_by_step():
    import reward_fns

    rows = generate_chain_problems(5, seed=0)
    completions = [to_sft_dataset([r], conversational=False)[0]["completion"] for r in rows]
    steps = reward_fns.get("arithmetic_steps")(prompts=None, completions=completions,
                                               answer=[r["answer"] for r in rows])
    for row, judged in zip(rows, steps):
        assert [r for _, r in judged] == [1.0] * len(ANNOTATION.findall(row["answer"]))  # the answer line: no step
    wrong = completions[0].replace(ANNOTATION.findall(rows[0]["answer"])[0][1], "999", 1)
    assert reward_fns.get("arithmetic_steps")(prompts=None, completions=[wrong], answer=[rows[0]["answer"]])[0][0][1] < 1


@pytest.mark.parametrize("kwargs", [{"n": -1}, {"n": 3, "min_ops": 0}, {"n": 3, "min_ops": 3, "max_ops": 2}])
def test_chain_problems_reject_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="n must be|min_ops"):
        generate_chain_problems(**kwargs)


def test_load_rows_chain_splits_do_not_overlap():
    train = load_rows("chain", "train", n=300)
    test = load_rows("chain", "test", n=300)
    assert len(train) == len(test) == 300
    assert len({r["question"] for r in train} & {r["question"] for r in test}) < 30  # small problem space, few repeats
    assert train != test
