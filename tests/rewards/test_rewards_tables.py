"""Tables of tricky completions, hand-scored, for extraction, normalisation and every GSM8K reward."""

from __future__ import annotations

import pytest

import reward_fns
from reward_fns import completion_text, extract_answer, extract_gold, normalize_number, to_training_format

TEN_K_DIGITS = "9" * 10_000


def _layout(answer: str, reasoning: str = "2 + 2 = 4") -> str:
    return f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n{answer}\n</answer>"


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param(_layout("#### 42"), "42", id="block-with-hash"),
        pytest.param(_layout("42"), "42", id="block-bare"),
        pytest.param(_layout("#### $1,234.50"), "$1,234.50", id="dollars-commas-cents"),
        pytest.param(_layout("#### -3"), "-3", id="negative"),
        pytest.param(_layout("The answer is 3.0 apples"), "The answer is 3.0 apples", id="block-sentence"),
        pytest.param("blah #### 7\nmore text 9", "7", id="hash-without-tags"),
        pytest.param("#### 3 then #### 5", "5", id="several-hashes-last-wins"),
        pytest.param(_layout("#### 3 #### 5"), "5", id="several-hashes-in-block"),
        pytest.param("#### 12 apples and 3 pears", "12", id="hash-line-first-number"),
        pytest.param("<answer><answer>5</answer></answer>", "5", id="nested-tags"),
        pytest.param("<answer>5</answer> junk <answer>", "5", id="unclosed-after-closed"),
        pytest.param("<answer>\n#### 8", "8", id="unclosed-answer-hash"),
        pytest.param("<answer> 17 is my guess", "17", id="unclosed-answer-last-number"),
        pytest.param("<answer>\n\n</answer> it was 6", "6", id="empty-block-falls-through"),
        pytest.param("I think 1/2 of 10 is 5.", "5", id="last-number"),
        pytest.param("答案是 42 个苹果", "42", id="chinese"),
        pytest.param("答案：<answer>#### ４２</answer>", "４２", id="fullwidth-digits"),
        pytest.param("", None, id="empty"),
        pytest.param("no digits at all", None, id="no-number"),
        pytest.param(TEN_K_DIGITS, TEN_K_DIGITS, id="10k-digits"),
        pytest.param(None, None, id="not-a-string"),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        ("$1,234.50", "1234.5"),
        ("1,080", "1080"),
        ("-3", "-3"),
        ("−3", "-3"),
        ("－３", "-3"),
        ("+5", "5"),
        ("- 3", "-3"),
        ("3.0", "3"),
        ("3.00", "3"),
        ("003", "3"),
        (".5", "0.5"),
        ("-0", "0"),
        ("1/2", "0.5"),
        ("3 / 4 cup", "0.75"),
        ("1/3", "1/3"),
        ("4/2", "2"),
        ("1/0", None),
        ("50%", "50"),
        ("42 apples", "42"),
        ("The answer is 42.", "42"),
        ("$ 5 dollars", "5"),
        ("\\$\\frac{3}{4}", "0.75"),
        ("\\boxed{12}", "12"),
        ("\\boxed{\\text{12 apples}}", "12"),
        ("\\sqrt{4}", None),
        ("2\\pi", None),
        ("3 hours 20 minutes", None),
        ("1,2,3", None),
        ("abc", None),
        ("", None),
        (None, None),
        (True, None),
        (7, "7"),
        (7.0, "7"),
        (2.5, "2.5"),
        (float("nan"), None),
        (TEN_K_DIGITS + ".000", TEN_K_DIGITS),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_normalize_number(value, expected):
    assert normalize_number(value) == expected


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "72"),
        ("#### 1,080", "1,080"),
        ("72", "72"),
        (72, "72"),
        (72.0, "72"),
        ("  -3 ", "-3"),
        ("#### ", None),
        ("#### foo", None),
        ("worked 3 and 4 without a final line", None),
        ("", None),
        (None, None),
        (float("inf"), None),
        ([72], None),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_extract_gold(answer, expected):
    assert extract_gold(answer) == expected


# (completion, gold, correctness, format, strict, soft, hash, trailing, integer)
# fmt: off
SCORING = [
    ("perfect", _layout("#### 72"), "#### 72", 2.0, 0.8, 0.5, 0.5, 0.2, 0.0, 0.5),
    ("write-up-style-bare", _layout("72"), "72", 2.0, 0.8, 0.5, 0.5, 0.0, 0.0, 0.5),
    ("numeric-3.0-vs-3", _layout("#### 3.0"), "3", 1.5, 0.8, 0.5, 0.5, 0.2, 0.0, 0.5),
    ("exact-3-vs-3", _layout("#### 3"), "3", 2.0, 0.8, 0.5, 0.5, 0.2, 0.0, 0.5),
    ("dollars-commas", _layout("#### $1,234.50"), "1234.5", 1.5, 0.8, 0.5, 0.5, 0.2, 0.0, 0.0),
    ("dollars-commas-gold", _layout("#### 1234.5"), "$1,234.50", 1.5, 0.8, 0.5, 0.5, 0.2, 0.0, 0.0),
    ("gold-with-commas-exact", _layout("#### 1,080"), "#### 1,080", 2.0, 0.8, 0.5, 0.5, 0.2, 0.0, 0.5),
    ("gold-with-commas-plain", _layout("#### 1080"), "#### 1,080", 1.5, 0.8, 0.5, 0.5, 0.2, 0.0, 0.5),
    ("negative", _layout("#### -3"), "-3", 2.0, 0.8, 0.5, 0.5, 0.2, 0.0, 0.5),
    ("negative-vs-positive", _layout("#### -3"), "3", 0.0, 0.8, 0.5, 0.5, 0.2, 0.0, 0.5),
    ("fraction-1/2", _layout("1/2"), "0.5", 1.5, 0.8, 0.5, 0.5, 0.0, 0.0, 0.0),
    ("units", _layout("#### 18 dollars"), "18", 1.5, 0.8, 0.5, 0.5, 0.2, 0.0, 0.5),
    ("percent", _layout("#### 25%"), "25", 1.5, 0.8, 0.5, 0.5, 0.2, 0.0, 0.5),
    ("wrong", _layout("#### 71"), "72", 0.0, 0.8, 0.5, 0.5, 0.2, 0.0, 0.5),
    ("two-numbers-in-block", _layout("72 or 73"), "72", 0.0, 0.8, 0.5, 0.5, 0.0, 0.0, 0.0),
    ("trailing-text", _layout("#### 72") + "\nHope this helps!", "72", 2.0, 0.8, 0.0, 0.0, 0.2, -0.5, 0.5),
    ("trailing-whitespace", _layout("#### 72") + "\n \n", "72", 2.0, 0.8, 0.0, 0.5, 0.2, 0.0, 0.5),
    ("one-final-newline", _layout("#### 72") + "\n", "72", 2.0, 0.8, 0.5, 0.5, 0.2, 0.0, 0.5),
    ("second-block-is-trailing", _layout("#### 1") + "\n<answer>\n#### 72\n</answer>", "72", 2.0, 0.8, 0.0, 0.0,
     0.2, -0.5, 0.5),
    ("several-hashes", _layout("#### 70 #### 72"), "72", 2.0, 0.8, 0.5, 0.5, 0.2, 0.0, 0.5),
    ("nested-tags", "<reasoning>\nx\n</reasoning>\n<answer>\n<answer>72</answer>\n</answer>", "72", 2.0, 0.8,
     0.0, 0.0, 0.0, -0.5, 0.5),
    ("unclosed-answer", "<reasoning>\nx\n</reasoning>\n<answer>\n#### 72", "72", 2.0, 0.6, 0.0, 0.0, 0.0, 0.0, 0.5),
    ("unclosed-reasoning", "<reasoning>\nso 72", "72", 2.0, 0.2, 0.0, 0.0, 0.0, 0.0, 0.5),
    ("tags-out-of-order", "<answer>\n72\n</answer>\n<reasoning>\nx\n</reasoning>", "72", 2.0, 0.8, 0.0, 0.0, 0.0,
     -0.5, 0.5),
    ("no-newlines-soft-only", "<reasoning>x</reasoning> <answer>72</answer>", "72", 2.0, 0.8, 0.0, 0.5, 0.0, 0.0, 0.5),
    ("empty", "", "72", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    ("chinese", _layout("#### 72", "小明有 36 个苹果，36 × 2 = 72"), "72", 2.0, 0.8, 0.5, 0.5, 0.2, 0.0, 0.5),
    ("chinese-no-tags", "答案是72。", "72", 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5),
    ("fullwidth-digits", _layout("#### ４２"), "42", 1.5, 0.8, 0.5, 0.5, 0.2, 0.0, 0.5),
    ("10k-digits", _layout("#### " + TEN_K_DIGITS), "72", 0.0, 0.8, 0.5, 0.5, 0.2, 0.0, 0.5),
    ("10k-digits-gold", _layout("#### " + TEN_K_DIGITS), TEN_K_DIGITS, 2.0, 0.8, 0.5, 0.5, 0.2, 0.0, 0.5),
]
# fmt: on
REWARDS = [
    "gsm8k_correctness",
    "gsm8k_format",
    "gsm8k_strict_format",
    "gsm8k_soft_format",
    "gsm8k_hash_format",
    "gsm8k_trailing_penalty",
    "gsm8k_integer",
]


@pytest.mark.parametrize("case", SCORING, ids=[c[0] for c in SCORING])
def test_gsm8k_rewards_table(case):
    _, completion, gold, *expected = case
    got = [reward_fns.get(name)(None, [completion], answer=[gold])[0] for name in REWARDS]
    assert got == pytest.approx(expected), dict(zip(REWARDS, got))
    # Conversational completions score the same as their text.
    messages = [{"role": "assistant", "content": completion}]
    assert reward_fns.gsm8k_correctness(None, [messages], answer=[gold]) == [expected[0]]


def test_completion_text_forms():
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "assistant", "content": "a"}]) == "a"
    tool_turns = [
        {"role": "assistant", "content": "calling"},
        {"role": "tool", "content": "42"},
        {"role": "assistant", "content": "#### 42"},
    ]
    assert completion_text(tool_turns) == "#### 42"
    assert completion_text([{"content": "a"}, {"content": "b"}]) == "a\nb"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "x"}, "y"]}]) == "xy"
    assert completion_text(None) == completion_text(42) == completion_text([None, 3]) == ""


def test_to_training_format():
    raw = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72"
    assert to_training_format(raw) == (
        "<reasoning>\nNatalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips.\n</reasoning>\n"
        "<answer>\n#### 72\n</answer>"
    )
    for bad in ("no final line", "#### ", None):
        with pytest.raises(ValueError):
            to_training_format(bad)


def test_factories_configure_values():
    text = _layout("#### 3.0") + " trailing"
    assert reward_fns.make_correctness_reward(exact=3.0, numeric=1.0)(None, [text], answer=["3"]) == [1.0]
    assert reward_fns.make_correctness_reward(exact=3.0)(None, [_layout("3")], answer=["3"]) == [3.0]
    assert reward_fns.make_format_reward(per_tag=0.25)(None, [text]) == [1.0]
    assert reward_fns.make_trailing_penalty(-1)(None, [text]) == [-1.0]
    assert reward_fns.make_hash_format_reward(1)(None, [text]) == [1.0]
    assert reward_fns.make_strict_format_reward(2)(None, [_layout("3")]) == [2.0]
    assert reward_fns.make_soft_format_reward(2)(None, [text]) == [0.0]
    assert reward_fns.make_integer_reward(1)(None, [text]) == [1.0]
    by_solution = reward_fns.make_correctness_reward(answer_key="solution")
    assert by_solution(None, [_layout("3")], solution=["3"]) == [2.0]


def test_math_equivalence_table():
    fn = reward_fns.math_equivalence
    completions = [
        _layout("#### 72"),
        _layout("#### 71"),
        "so the answer is \\boxed{\\frac{1}{2}}",
        _layout("0.5"),
        "\\boxed{2\\sqrt{2}}",
        "",
        "\\boxed{2}",
        _layout("6*12"),
    ]
    golds = ["#### 72", "72", "0.5", "\\frac{1}{2}", "\\sqrt{8}", "72", "\\sqrt{4}", "72"]
    assert fn(None, completions, answer=golds) == [1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]


def test_length_penalty():
    fn = reward_fns.make_length_penalty(free_length=10, max_length=20, penalty=-1.0)
    assert fn(None, ["x" * 5, "x" * 15, "x" * 50]) == [0.0, -0.5, -1.0]
    tokens = reward_fns.make_length_penalty(free_length=1, max_length=3, unit="tokens")
    assert tokens(None, ["a", "b"], completion_ids=[[1, 2], [1]]) == [-0.5, 0.0]
    with pytest.raises(ValueError, match="completion_ids"):
        tokens(None, ["a"])
