"""`arithmetic_steps` and `split_steps`: tables of hand-checked cases, and the real GSM8K gold solutions."""

from __future__ import annotations

import json
import re

import pytest

import reward_fns
from reward_fns import ArithError, evaluate, find_claims, make_arithmetic_steps, split_steps

# The annotated gold steps that `arithmetic_steps` judges wrong, with why. In every one the calculator
# annotation is right and the prose around it states false arithmetic, so the step as written IS
# wrong: these are errors in the data, not in the checker.
KNOWN_WRONG_GOLD_STEPS = {
    "6*2.5 = $<<6*3=18.00>>18.00": "prose multiplies by 2.5, the price is $3.00",
    "4080 + 4080 / 2 = 4000 + 2040": "typo: 4000 for 4080",
    "so 8*3 = <<80*3=240>>240": "typo: 8 for 80",
    ".8 + . 84 + .82 = <<": "typo: '. 84' (a space inside .84), read as 84",
    "on day 1 * 2 = <<10*2=20>>20": "the prose says 1 * 2 = 20 (the 10 is earlier in the sentence)",
    "14, 400 / 80 = <<14400/80=180>>180": "typo: '14, 400' (a space inside 14,400)",
    "had 50-8 = <<52-8=44>>44": "typo: 50 for 52",
    "500/ 1/10 = <<500/1/10=50>>50": "prose reads 500 / (1/10) = 5000; the annotation divides left to right",
    "364 / 4 = <<3/4*364=273>>273": "prose drops the 3: 364 / 4 is 91",
}


# Calculator annotations, and unannotated steps judged wrong (all data errors, see below), in the
# committed sample (which holds every row with a known wrong annotated step) and in the full GSM8K.
COUNTS = {"sample": (1984, 3), "full": (27998, 24)}


@pytest.fixture(scope="module")
def counts(gsm8k_is_full) -> tuple[int, int]:
    return COUNTS["full" if gsm8k_is_full else "sample"]


@pytest.fixture(scope="module")
def raw_answers(gsm8k_dir) -> list[str]:
    files = [gsm8k_dir / "train.jsonl", gsm8k_dir / "test.jsonl"]
    return [json.loads(line)["answer"] for f in files for line in f.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(scope="module")
def gold_steps(raw_answers) -> list[list[tuple[int, float]]]:
    return reward_fns.arithmetic_steps(None, raw_answers)


def _step_text(text: str, offset: int) -> str:
    return text[text.rfind("\n", 0, offset) + 1 : offset + 1]


def test_gold_annotated_steps_are_judged_correct(raw_answers, gold_steps, counts):
    """Every annotated gold step is judged +1, except the documented data errors above.

    Measured: 27,998 annotated steps (one annotation each), 27,989 judged correct (99.968%), 9 wrong,
    each a step whose prose contradicts its (correct) annotation. All 27,998 annotations on their
    own check out: the exact evaluator plus "rounded or truncated to the written decimals" accepts
    every calculator result in GSM8K.

    Steps without an annotation: 24 more are judged wrong, and reading each shows the prose arithmetic
    is false as written: typos ("14*20=140", "$4200+$3000 = $8600", "4+4+6 = 18", "$32 - $20 = $300"),
    unit switches ("$1 / 2 = 50 cents", "5 * 3 = $15,000" for thousands), integer division written as
    "/" ("13 / 6 = 2 full cycles"), and inverted operations ("5 x 1/2 = 10 halves", "6/3=.5"). The
    bound below is that exact count, so a change in the checker that misjudges more shows up here.
    """
    annotated = correct = 0
    wrong_steps, wrong_unannotated = [], []
    for text, steps in zip(raw_answers, gold_steps):
        assert [o for o, _ in steps] == sorted(o for o, _ in steps)
        for offset, reward in steps:
            step = _step_text(text, offset)
            if "<<" not in step:
                if reward < 0:
                    wrong_unannotated.append(step)
                continue
            annotated += 1
            correct += reward == 1.0
            if reward != 1.0:
                wrong_steps.append(step)
    n_steps = sum(len(s) for s in gold_steps)
    print(
        f"\narithmetic_steps on {len(raw_answers)} gold solutions ({n_steps} steps): {correct}/{annotated} "
        f"annotated steps judged correct ({correct / annotated:.3%}); {len(wrong_steps)} annotated and "
        f"{len(wrong_unannotated)} unannotated steps judged wrong (documented data errors)"
    )
    n_annotations, n_wrong_unannotated = counts
    assert annotated == n_annotations
    unexplained = [s for s in wrong_steps if not any(k in s for k in KNOWN_WRONG_GOLD_STEPS)]
    assert unexplained == []
    # Both data sets hold every known wrong step, each judged wrong exactly once.
    assert sorted(k for s in wrong_steps for k in KNOWN_WRONG_GOLD_STEPS if k in s) == sorted(KNOWN_WRONG_GOLD_STEPS)
    assert len(wrong_unannotated) <= n_wrong_unannotated


def test_every_gold_annotation_checks_out_on_its_own(raw_answers, counts):
    annotations = [a for text in raw_answers for a in re.findall(r"<<[^<>]*>>", text)]
    verdicts = [v for a in annotations for v in find_claims(a).annotations]
    assert len(annotations) == len(verdicts) == counts[0]
    assert all(verdicts)


def test_corrupting_one_annotation_makes_exactly_that_step_wrong(raw_answers, gold_steps):
    originals, corrupted, targets = [], [], []
    for text, steps in zip(raw_answers, gold_steps):
        for index, (offset, reward) in enumerate(steps):
            line_start = text.rfind("\n", 0, offset) + 1
            m = re.search(r"<<[^<>=]*=([^<>]*)>>", text[line_start : offset + 1])
            if reward == 1.0 and m:
                # Shift the result's last digit by 5: same length (offsets stay put) and never within
                # the rounding/truncation slack of one unit in the last place.
                pos = line_start + m.end(1) - 1
                digit = str((int(text[pos]) + 5) % 10)
                originals.append(steps)
                corrupted.append(text[:pos] + digit + text[pos + 1 :])
                targets.append(index)
                break
    assert len(corrupted) > 0.97 * len(raw_answers)
    changed = 0
    for before, after, target in zip(originals, reward_fns.arithmetic_steps(None, corrupted), targets):
        expected = list(before)
        expected[target] = (before[target][0], -1.0)
        assert after == expected
        changed += 1
    print(f"\ncorrupted one annotation in {changed} solutions: exactly that step became -1 in all")


@pytest.mark.parametrize(
    "expr, value",
    [
        ("48/2", 24),
        ("100-50-30-15", 5),
        ("$1,200 * 15%", 180),
        ("(60+72+42)/3", 58),
        ("-14+-8+1", -21),
        ("-18/-2", 9),
        ("560//10", 56),
        ("3*+6", 18),
        (".8+.84+.82", 2.46),
        ("25 / 1/3", 75),  # a tight fraction is one literal, as people write it
        ("168/20%", 840),
        ("2 × 3 ÷ 4", 1.5),
        ("10 – 4", 6),
    ],
    ids=lambda x: str(x),
)
def test_safe_evaluator(expr, value):
    assert float(evaluate(expr)) == pytest.approx(value)


@pytest.mark.parametrize(
    "expr",
    ["__import__('os')", "2**3", "1/0", "(" * 100 + "1" + ")" * 100, "1" * 40, "1,2", "3 4", "", "0900-0130", "a+1"],
    ids=[
        "import",
        "power",
        "div-zero",
        "deep-nesting",
        "40-digits",
        "bad-comma",
        "juxtaposed",
        "empty",
        "clock",
        "var",
    ],
)
def test_safe_evaluator_rejects(expr):
    with pytest.raises(ArithError):
        evaluate(expr)


@pytest.mark.parametrize(
    "step, verdicts",
    [
        ("3*4 = 12 + 1 = 13", (True, True)),
        ("3*4 = 13", (False,)),
        ("3 * 4 = 12 + 1 = 14", (True, False)),
        ("He has 5 + 3 = 8 apples.", (True,)),
        ("He has 5 + 3 = 9 apples.", (False,)),
        ("Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.", (True, True)),
        ("Weng earns 12/60 = $<<12/60=0.3>>0.2 per minute.", (False, True)),
        ("0.2 x 50 = $10", (True,)),
        ("10/3 = 3.33", (True,)),  # rounded to the written decimals
        ("2/3 = 0.66", (True,)),  # truncated to the written decimals
        ("7/2 = 3", (False,)),  # an integer result gets no rounding slack
        ("10/20*100 = 50%", (True,)),
        ("$1,000 * 5% = $50", (True,)),
        ("2 hours = 120 minutes", ()),  # two literals: a conversion, not arithmetic
        ("Week 2 = 35 + 35 = 70", (True,)),  # a leading literal is a label
        ("60 students x 2/3 = 40 students", ()),  # "x" after a word: the 60 is outside the run
        ("10% of 150 = 15", ()),
        ("2x + 3 = 7", ()),  # algebra, not arithmetic
        ("It ends at 6:00+48=6:48 PM", ()),
        ("To carry 17 objects it takes 17/3 = 5 and 2/3 loads", ()),
        ("No numbers here.", ()),
        ("答：3+4=7个苹果", (True,)),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_find_claims_table(step, verdicts):
    assert find_claims(step).all == verdicts


@pytest.mark.parametrize(
    "text, sep, spans",
    [
        ("a\nbb\n\n  c  \n", "\n", [(0, 1), (2, 4), (8, 9)]),
        ("", "\n", []),
        ("\n\n \n", "\n", []),
        ("one. two.", ". ", [(0, 3), (5, 9)]),
        ("x\r\ny", "\n", [(0, 1), (3, 4)]),
    ],
    ids=["lines", "empty", "blank", "custom-sep", "crlf"],
)
def test_split_steps(text, sep, spans):
    assert split_steps(text, sep) == spans


def test_arithmetic_steps_offsets_are_last_characters():
    text = "<reasoning>\n3*4 = 12\n3*4 = 13\nso\n</reasoning>\n<answer>\n#### 12\n</answer>"
    [steps] = reward_fns.arithmetic_steps(None, [text])
    # Tag-only and claim-free lines are not steps; each offset is the step's last character.
    assert [text[o] for o, _ in steps] == ["2", "3"]
    assert [text[: o + 1].rsplit("\n", 1)[-1] for o, _ in steps] == ["3*4 = 12", "3*4 = 13"]
    assert [r for _, r in steps] == [1.0, -1.0]
    [scored] = make_arithmetic_steps(neutral=0.0)(None, [text])  # a number scores the claim-free lines
    assert [text[: o + 1].rsplit("\n", 1)[-1] for o, _ in scored] == ["3*4 = 12", "3*4 = 13", "so", "#### 12"]
    assert [r for _, r in scored] == [1.0, -1.0, 0.0, 0.0]
    assert reward_fns.arithmetic_steps(None, ["", "   \n"]) == [[], []]


# The exploit seen at 19,200 completions (root_causes.md section 3): on a hard prompt the policy cut its claim
# before the result. None of its lines is a step, so it earns nothing over a wrong claim's completion.
CUT = "<reasoning>\n96+76=\n2\n</reasoning>\n<answer>\n#### +2\n</answer>"
WRONG = "<reasoning>\n96+76=171\n</reasoning>\n<answer>\n#### 171\n</answer>"
RIGHT = "<reasoning>\n96+76=172\n</reasoning>\n<answer>\n#### 172\n</answer>"


@pytest.mark.parametrize(
    ("kwargs", "text", "rewards"),
    [
        ({}, CUT, []),
        ({}, WRONG, [-1.0]),
        ({}, RIGHT, [1.0]),
        ({"neutral": 0.0}, CUT, [0.0, 0.0, 0.0]),
        ({"final_answer_weight": 1.0}, CUT, [-1.0]),  # the last line carries the answer term, claim or not
        ({"final_answer_weight": 1.0}, WRONG, [-1.0, -1.0]),
        ({"final_answer_weight": 1.0}, RIGHT, [1.0, 1.0]),
        ({"neutral": 0.5, "final_answer_weight": 1.0}, CUT, [0.5, 0.5, -0.5]),
    ],
)
def test_arithmetic_steps_claim_free_lines(kwargs, text, rewards):
    [steps] = make_arithmetic_steps(**kwargs)(None, [text], answer=["172"])
    assert [r for _, r in steps] == rewards


def test_arithmetic_steps_is_configurable():
    text = "3*4 = 12\nthen\n3*4 = 13\n#### 12"
    fn = make_arithmetic_steps(correct=0.5, wrong=-2.0, neutral=0.1, final_answer_weight=1.0)
    assert [r for _, r in fn(None, [text], answer=["#### 12"])[0]] == [0.5, 0.1, -2.0, 1.1]
    assert [r for _, r in fn(None, [text], answer=["13"])[0]] == [0.5, 0.1, -2.0, -0.9]
    by_sentence = make_arithmetic_steps(sep=". ")
    assert by_sentence(None, ["2+2 = 4. 2+2 = 5. done"]) == [[(6, 1.0), (15, -1.0)]]
    assert reward_fns.is_process_reward(fn) and not reward_fns.is_process_reward(reward_fns.gsm8k_format)
    with pytest.raises(ValueError, match="answer"):
        fn(None, [text])  # the final-answer term needs the gold column
