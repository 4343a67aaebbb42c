"""Dataset-agnostic rewards: math equivalence, a length penalty, and TRL's soft overlong punishment.

`math_equivalence` verifies with math-verify, configured as `trl.rewards.accuracy_reward` configures it
(LaTeX extraction, `\\boxed{}` first, units normalised), but reads its inputs differently: TRL's function
reads the gold from a `solution` column and only looks for an answer in LaTeX (`\\boxed{...}` or `$...$`),
while GSM8K-style data has `answer` (`... #### 72`) and completions that answer with `#### 72` in an
`<answer>` block.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

from trl.rewards import get_soft_overlong_punishment

from .arith import ArithError, evaluate
from .base import RewardFunction, short_repr
from .parsing import _THOUSANDS_RE, extract_answer, extract_gold, normalize_number

# Re-exported unchanged (DAPO's soft overlong punishment, Eq. 13); registered as "soft_overlong".
soft_overlong = get_soft_overlong_punishment

_PLAIN_NUMBER_RE = re.compile(r"-?\$?\d+(?:\.\d+)?", re.ASCII)
# Characters that make an answer an expression (for math-verify) rather than a number with words.
_EXPRESSION_CHARS = re.compile(r"[\\^*/+=(){}\[\]]|\d\s*-\s*\d")
# What a final answer sent to math-verify may contain: printable ASCII and common math symbols.
_MATHY_RE = re.compile(r"[\x20-\x7e\n\tπ√½⅓⅔¼¾×÷−–·∞°≤≥≠±]*")
# math-verify's cost grows with length and, steeply, with nesting ("((((...": seconds, then its 10 s
# timeout); no real final answer comes near these limits, so nothing beyond them is sent to it.
MAX_VERIFY_CHARS = 300
MAX_VERIFY_DEPTH = 12


def _verifiable(text: str) -> bool:
    if not text.strip() or len(text) > MAX_VERIFY_CHARS:
        return False
    depth = deepest = 0
    for ch in text:
        if ch in "({[":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")}]":
            depth = max(depth - 1, 0)
    return deepest <= MAX_VERIFY_DEPTH


def _plain_number(text: str) -> str | None:
    """The canonical form of `text` when it is just a decimal number (no %, fraction or expression)."""
    text = _THOUSANDS_RE.sub("", text.strip())
    if not _PLAIN_NUMBER_RE.fullmatch(text):
        return None
    negative = text.startswith("-")
    whole, _, frac = text.lstrip("-$").partition(".")
    out = (whole.lstrip("0") or "0") + ("." + frac.rstrip("0") if frac.rstrip("0") else "")
    return "-" + out if negative and out != "0" else out


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (balanced braces), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 1, start + len("\\boxed{")
    for i in range(begin, min(len(text), begin + MAX_VERIFY_CHARS + 1)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:i]
    return None


def _gold_for_verify(gold: str) -> str:
    plain = _plain_number(gold)
    if plain is not None:
        return plain  # "1,080" would parse as a tuple
    if "$" in gold or "\\boxed" in gold:
        return gold
    return f"${gold}$"  # math-verify finds bare LaTeX ("\\sqrt{8}") only between anchors


@lru_cache(maxsize=4096)
def _verify(candidate: str, gold: str) -> float | None:
    """math-verify on one pair, with the settings of `trl.rewards.accuracy_reward`: 1.0 / 0.0, or None
    when the gold cannot be parsed. Cached, since a GRPO group repeats its answers."""
    from latex2sympy2_extended import NormalizationConfig
    from math_verify import LatexExtractionConfig, parse, verify

    # math-verify's timeouts use signal.alarm, which only works in the main thread.
    main = threading.current_thread() is threading.main_thread()
    gold_parsed = parse(_gold_for_verify(gold), parsing_timeout=10 if main else None)
    if not gold_parsed:
        return None
    config = LatexExtractionConfig(normalization_config=NormalizationConfig(units=True), boxed_match_priority=0,
                                   try_extract_without_anchor=False)
    answer = parse("\\boxed{" + candidate + "}", extraction_config=[config], extraction_mode="first_match",
                   parsing_timeout=10 if main else None)
    return float(verify(gold_parsed, answer, timeout_seconds=5 if main else None))


class MathEquivalence(RewardFunction):
    """1.0 when the completion's answer is mathematically equal to the gold (math-verify), else 0.0;
    None when math-verify cannot parse the gold.

    The completion's answer is the content of its last `\\boxed{}` if it has one, else `extract_answer`
    (the answer block, `####`, or the last number). When the gold is a plain number and the answer is a
    number, possibly with words or units ("72 apples", "$1,080"), the comparison is decided directly
    (exact value), which is what math-verify would conclude at a thousandth of the cost; expressions
    and LaTeX (`\\frac{144}{2}`, `2\\sqrt{2}`) go to math-verify.
    """

    needs_gold = True

    def __init__(self, correct: float = 1.0, wrong: float = 0.0, answer_key: str = "answer", name="math_equivalence"):
        super().__init__(name, answer_key=answer_key)
        self.correct, self.wrong = float(correct), float(wrong)

    def parse_gold(self, raw: object) -> str | None:
        # Unlike the GSM8K rewards, a gold here may be any LaTeX ("\frac{1}{3}", "x^2"), not only a number.
        if isinstance(raw, str) and "####" not in raw:
            gold = raw.strip()
            return gold if _verifiable(gold) and (_MATHY_RE.fullmatch(gold) or normalize_number(gold)) else None
        gold = extract_gold(raw)
        return gold if gold is not None and _verifiable(gold) else None

    def score(self, text, gold):
        candidate = last_boxed(text) if "\\boxed{" in text else extract_answer(text)
        if candidate is None or not _verifiable(candidate):
            return self.wrong
        number_gold = normalize_number(gold)
        if number_gold is not None:
            # Numbers and arithmetic are decided here, exactly and cheaply; only LaTeX needs math-verify.
            if not _EXPRESSION_CHARS.search(candidate):
                return self.correct if normalize_number(candidate) == number_gold else self.wrong
            try:
                return self.correct if evaluate(candidate) == evaluate(number_gold) else self.wrong
            except ArithError:
                pass
        if not _MATHY_RE.fullmatch(candidate):
            return self.wrong  # controls, CJK or emoji in a final answer: nothing math-verify could read
        result = _verify(candidate.strip(), gold)
        if result is None:
            self.warn_once(
                "gold", f"{self.__name__}: math-verify cannot parse the gold {short_repr(gold)}; returning None."
            )
            return None
        return self.correct if result else self.wrong


class LengthPenalty(RewardFunction):
    """0 up to `free_length`, then linear down to `penalty` at `max_length`, and `penalty` beyond.

    `unit="chars"` measures the completion text; `unit="tokens"` uses TRL's `completion_ids` column
    (a ValueError names it when it is missing). For a token budget with a soft margin, DAPO's
    `soft_overlong` is the standard alternative; this one works on text alone and any trainer.
    """

    def __init__(
        self,
        free_length: int = 1000,
        max_length: int = 2000,
        penalty: float = -1.0,
        unit: str = "chars",
        name: str = "length_penalty",
    ):
        if unit not in ("chars", "tokens"):
            raise ValueError(f"unit must be 'chars' or 'tokens', got {unit!r}")
        if not 0 <= free_length < max_length:
            raise ValueError(f"need 0 <= free_length < max_length, got {free_length}, {max_length}")
        super().__init__(name)
        self.free_length, self.max_length, self.penalty, self.unit = free_length, max_length, float(penalty), unit

    def __call__(self, prompts=None, completions=None, **kwargs):
        texts = self.texts(completions)
        if self.unit == "chars":
            lengths = [len(t) for t in texts]
        else:
            ids = kwargs.get("completion_ids")
            if ids is None:
                raise ValueError(f"{self.__name__} with unit='tokens' needs `completion_ids`; it was not passed.")
            lengths = [len(x) if hasattr(x, "__len__") else 0 for x in ids]
        return [self.length_reward(n) for n in lengths]

    def length_reward(self, length: int) -> float:
        excess = min(max(length - self.free_length, 0), self.max_length - self.free_length)
        return self.penalty * excess / (self.max_length - self.free_length) if excess else 0.0


def make_math_equivalence(correct: float = 1.0, wrong: float = 0.0, answer_key: str = "answer") -> MathEquivalence:
    return MathEquivalence(correct, wrong, answer_key)


def make_length_penalty(
    free_length: int = 1000, max_length: int = 2000, penalty: float = -1.0, unit: str = "chars"
) -> LengthPenalty:
    return LengthPenalty(free_length, max_length, penalty, unit)


math_equivalence = make_math_equivalence()
length_penalty = make_length_penalty()
