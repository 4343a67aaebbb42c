"""Never raise on model output: 10,000 seeded adversarial completions (and golds) through every registered
reward function, plus a hypothesis pass over arbitrary unicode; None semantics; the missing-column error."""

from __future__ import annotations

import math
import random
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reward_fns
from reward_fns import RewardWarning

N_FUZZ = 10_000

# fmt: off
FRAGMENTS = [
    "<reasoning>", "</reasoning>", "<answer>", "</answer>", "<answer", "answer>", "</", "<<", ">>", "####", "#",
    "=", " = ", "+", "-", "*", "/", "//", "%", "$", "(", ")", "((((", "))))", ".", ",", ", ", "x", " x ", "×", "÷",
    "−", "–", "^", "**", "e", "E", "\\boxed{", "\\frac{1}{", "}", "{", "\\", "$$", "\n", "\n\n", "\r\n", "\t", " ",
    "   ", "\x00", "\u200b", "\ufeff", "\u202e", "\ud800", "é", "e\u0301", "答案", "是", "个", "：", "４２", "－", "😀",
    "NaN", "inf", "-inf", "1e308", "0x1F", "1_000", "None", "True", "<<12*3=36>>", "<<1/0=1>>", "<<9999999999**99=1>>",
    "3*4 = 12 + 1 = 13", "0.2 x 50 = $10", "12/60 = $0.2", "1,234.50", "1,2,3", "0900-0130", "6:00+48=6:48",
]
# fmt: on


def _number(rng: random.Random) -> str:
    kind = rng.randrange(8)
    if kind == 0:
        return str(rng.randint(-(10**6), 10**6))
    if kind == 1:
        return f"{rng.uniform(-1e4, 1e4):.{rng.randint(0, 6)}f}"
    if kind == 2:  # past every digit limit
        return "9" * (rng.choice([31, 100, 5000, 10_000]) if rng.random() < 0.1 else rng.choice([31, 100]))
    if kind == 3:
        return f"{rng.randint(0, 99)}/{rng.randint(0, 99)}"
    if kind == 4:
        return f"${rng.randint(0, 10**7):,}.{rng.randint(0, 99):02d}"
    if kind == 5:
        return f"{rng.randint(0, 99)}%"
    if kind == 6:
        return f"<<{rng.randint(0, 99)}*{rng.randint(0, 99)}={rng.randint(0, 9999)}>>{rng.randint(0, 9999)}"
    return "".join(rng.choice("0123456789.,-") for _ in range(rng.randint(1, 12)))


def _adversarial(rng: random.Random) -> str:
    shape = rng.randrange(10)
    if shape == 0:  # long repetitions that would make a backtracking regex quadratic
        unit = rng.choice(["(", " ", "1,", "=", "-", "<answer>", "#### ", "\n", "1 + ", "$ - ", "\\boxed{", "1="])
        return unit * rng.randint(200, 2000)
    if shape == 1:  # a well-formed completion with random damage
        body = f"<reasoning>\n{_number(rng)} + {_number(rng)} = {_number(rng)}\n</reasoning>\n<answer>\n#### {_number(rng)}\n</answer>"
        cut = rng.randrange(len(body) + 1)
        return body[:cut] + rng.choice(FRAGMENTS) + body[cut:]
    if shape == 2:  # random code points, including surrogates and controls
        return "".join(chr(rng.randrange(0, 0x10FFFF)) for _ in range(rng.randint(0, 60)))
    parts = []
    for _ in range(rng.randint(0, 40)):
        parts.append(_number(rng) if rng.random() < 0.3 else rng.choice(FRAGMENTS))
    return "".join(parts)


def _completion(rng: random.Random, text: str) -> object:
    form = rng.randrange(12)
    if form == 0:
        return [{"role": "assistant", "content": text}]
    if form == 1:
        return [{"role": "user", "content": "q"}, {"role": "assistant", "content": [{"type": "text", "text": text}]}]
    if form == 2:
        return rng.choice([None, 42, 3.5, [], [None], [{"content": None}], {"content": text}, b"bytes", [{}]])
    return text


def _gold(rng: random.Random) -> object:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice([None, float("nan"), float("inf"), "", "####", "#### foo", [], {}, True, 10**5000])
    if kind == 1:
        return _adversarial(rng)
    return f"worked\n#### {_number(rng)}" if kind == 2 else _number(rng)


def _check_outcome(name, out, n):
    assert isinstance(out, list) and len(out) == n, name
    for r in out:
        assert r is None or (type(r) is float and not math.isnan(r)), (name, r)


def _check_process(name, out, texts):
    assert isinstance(out, list) and len(out) == len(texts), name
    for steps, text in zip(out, texts):
        assert isinstance(steps, list), name
        last = -1
        for offset, reward in steps:
            assert type(offset) is int and last < offset < len(text), (name, offset, len(text))
            assert type(reward) is float and not math.isnan(reward), (name, reward)
            last = offset


def _all_functions():
    fns = {name: reward_fns.get(name) for name in reward_fns.names() if name != "soft_overlong"}
    fns["soft_overlong"] = reward_fns.get("soft_overlong", max_completion_len=64, soft_punish_cache=16)
    fns["arithmetic_steps+final"] = reward_fns.make_arithmetic_steps(final_answer_weight=1.0)
    fns["length_penalty/tokens"] = reward_fns.make_length_penalty(unit="tokens")
    return fns


def test_seeded_fuzz_never_raises():
    rng = random.Random(20250301)
    texts = [_adversarial(rng) for _ in range(N_FUZZ)]
    completions = [_completion(rng, t) for t in texts]
    golds = [_gold(rng) for _ in range(N_FUZZ)]
    ids = [[0] * rng.randint(0, 100) for _ in range(N_FUZZ)]
    plain = [reward_fns.completion_text(c) for c in completions]
    fns = _all_functions()
    assert set(reward_fns.names()) <= set(fns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # abstentions on the junk golds warn (once); that is tested elsewhere
        for name, fn in fns.items():
            batch = 500  # TRL's calls are batched too; also keeps the math-verify calls per batch bounded
            for i in range(0, N_FUZZ, batch):
                chunk = slice(i, i + batch)
                out = fn(prompts=None, completions=completions[chunk], answer=golds[chunk], completion_ids=ids[chunk])
                if reward_fns.is_process_reward(fn):
                    _check_process(name, out, plain[chunk])
                else:
                    _check_outcome(name, out, len(completions[chunk]))
    print(f"\nfuzz: {N_FUZZ} adversarial completions x {len(fns)} reward functions, none raised")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=300), gold=st.one_of(st.none(), st.text(max_size=30), st.integers(), st.floats()))
def test_hypothesis_never_raises(text, gold):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, fn in _all_functions().items():
            out = fn(
                prompts=None,
                completions=[text, [{"role": "assistant", "content": text}]],
                answer=[gold, gold],
                completion_ids=[[1], []],
            )
            if reward_fns.is_process_reward(fn):
                _check_process(name, out, [text, text])
            else:
                _check_outcome(name, out, 2)


# --------------------------------------------------------------------------- None semantics

GOLD_READERS = {
    "gsm8k_correctness": reward_fns.make_correctness_reward,
    "math_equivalence": reward_fns.make_math_equivalence,
    "arithmetic_steps+final": lambda: reward_fns.make_arithmetic_steps(final_answer_weight=1.0),
}


@pytest.mark.parametrize("name", list(GOLD_READERS))
def test_unparseable_gold_abstains_and_warns_once(name):
    fn = GOLD_READERS[name]()  # a fresh instance: the warning is once per function instance
    bad_golds = [None, "", "#### ", float("nan")]
    text = "<reasoning>\n2+2 = 4\n</reasoning>\n<answer>\n#### 4\n</answer>"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = fn(None, [text] * len(bad_golds), answer=bad_golds)
        second = fn(None, [text, text], answer=["#### foo", "#### 4"])
    if reward_fns.is_process_reward(fn):
        # No gold, no final-answer term: the steps are scored as without `final_answer_weight`.
        assert first == [reward_fns.arithmetic_steps(None, [text])[0]] * len(bad_golds)
        assert second[1][-1][1] == 1.0
    else:
        assert first == [None] * len(bad_golds)
        assert second == [None, 1.0 if name == "math_equivalence" else 2.0]
    ours = [w for w in caught if issubclass(w.category, RewardWarning)]
    assert len(ours) == 1, [str(w.message) for w in ours]
    assert "answer" in str(ours[0].message)


def test_gold_for_whole_batch_may_be_a_scalar():
    text = "<answer>\n#### 4\n</answer>"
    assert reward_fns.gsm8k_correctness(None, [text, "#### 5"], answer="4") == [2.0, 0.0]


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize("name", list(GOLD_READERS))
def test_missing_answer_column_is_a_config_error(name):
    fn = GOLD_READERS[name]()
    with pytest.raises(ValueError) as err:
        fn(prompts=["q"], completions=["#### 4"], question=["q"], solution=["4"], trainer_state=object())
    message = str(err.value)
    assert "'answer'" in message and "['question', 'solution']" in message
    assert "trainer_state" not in message  # TRL's own keywords are not dataset columns


def test_rewards_that_need_no_gold_do_not_ask_for_it():
    for name in (
        "gsm8k_format",
        "gsm8k_strict_format",
        "gsm8k_soft_format",
        "gsm8k_hash_format",
        "gsm8k_trailing_penalty",
        "gsm8k_integer",
        "length_penalty",
        "arithmetic_steps",
    ):
        out = reward_fns.get(name)(prompts=["q"], completions=["#### 4"], question=["q"])
        assert len(out) == 1, name


def test_mismatched_gold_length_is_a_config_error():
    with pytest.raises(ValueError, match="2 values for 3 completions"):
        reward_fns.gsm8k_correctness(None, ["a", "b", "c"], answer=["1", "2"])
    with pytest.raises(ValueError, match="completions"):
        reward_fns.gsm8k_format(None, None)
