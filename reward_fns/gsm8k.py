"""GSM8K rewards for the `<reasoning>`/`<answer>`/`####` format.

Specification: docs/algorithms.md, "GSM8K answer format and rewards". The training prompt asks for

    <reasoning>
    ...step by step...
    </reasoning>
    <answer>
    #### 42
    </answer>

The default values reproduce the scoring of aburkov's "GRPO from scratch" notebook (0.2 per tag,
2.0 for an exact answer, 1.5 for a numerically equal one) and its lm-eval variant (+0.2 for `####`,
a penalty for text after `</answer>`, which lm-eval's extraction would trip over). Each reward is a
`make_*` factory plus a module-level default instance, registered by name in `reward_fns.registry`.
"""

from __future__ import annotations

import re

from .base import RewardFunction, short_repr
from .parsing import TAGS, answer_block, extract_answer, extract_gold, is_integer_string, normalize_number

# The whole layout, in order, each tag exactly once: a tag inside a block would let `.*?` swallow a
# second block, so the block bodies are "anything that is not one of our tags".
_BODY = r"(?:(?!</?(?:reasoning|answer)>).)*?"
STRICT_FORMAT_RE = re.compile(rf"\A<reasoning>\n{_BODY}\n</reasoning>\n<answer>\n{_BODY}\n</answer>\n?\Z", re.DOTALL)
# The soft layout: both blocks in order, any whitespace around and between them, nothing after.
SOFT_FORMAT_RE = re.compile(rf"\A\s*<reasoning>{_BODY}</reasoning>\s*<answer>{_BODY}</answer>\s*\Z", re.DOTALL)
_ANNOTATION_RE = re.compile(r"<<[^<>]*>>")


class FormatReward(RewardFunction):
    """`per_tag` for each of `<reasoning>`, `</reasoning>`, `<answer>`, `</answer>` present (max 4x)."""

    def __init__(self, per_tag: float = 0.2, name: str = "gsm8k_format"):
        super().__init__(name)
        self.per_tag = float(per_tag)

    def score(self, text, gold):
        return self.per_tag * sum(tag in text for tag in TAGS)


class RegexFormatReward(RewardFunction):
    """`reward` when the completion matches `pattern` (the whole text), else 0."""

    def __init__(self, pattern: re.Pattern, reward: float, name: str):
        super().__init__(name)
        self.pattern, self.reward = pattern, float(reward)

    def score(self, text, gold):
        return self.reward if self.pattern.match(text) else 0.0


class HashFormatReward(RewardFunction):
    """`reward` when the `<answer>` block contains `####` (what lm-eval's strict filter needs)."""

    def __init__(self, reward: float = 0.2, name: str = "gsm8k_hash_format"):
        super().__init__(name)
        self.reward = float(reward)

    def score(self, text, gold):
        block = answer_block(text)
        return self.reward if block is not None and "####" in block else 0.0


class TrailingTextPenalty(RewardFunction):
    """`penalty` when non-whitespace text follows the first `</answer>`, else 0.

    The first one, not the last: a second answer block after the first is trailing text too, and it
    is exactly what makes lm-eval extract the wrong number.
    """

    def __init__(self, penalty: float = -0.5, name: str = "gsm8k_trailing_penalty"):
        super().__init__(name)
        self.penalty = float(penalty)

    def score(self, text, gold):
        end = text.find("</answer>")
        if end < 0:
            return 0.0
        return self.penalty if text[end + len("</answer>") :].strip() else 0.0


class CorrectnessReward(RewardFunction):
    """`exact` when the extracted answer equals the gold string, `numeric` when the two are the same
    number after normalisation (`$1,080.00` vs `1080`), else `wrong`. None when the gold is unreadable.
    """

    needs_gold = True

    def __init__(
        self,
        exact: float = 2.0,
        numeric: float = 1.5,
        wrong: float = 0.0,
        answer_key: str = "answer",
        name: str = "gsm8k_correctness",
    ):
        super().__init__(name, answer_key=answer_key)
        self.exact, self.numeric, self.wrong = float(exact), float(numeric), float(wrong)

    def score(self, text, gold):
        found = extract_answer(text)
        if found is None:
            return self.wrong
        if found == gold:
            return self.exact
        canonical = normalize_number(found)
        return self.numeric if canonical is not None and canonical == normalize_number(gold) else self.wrong


class IntegerReward(RewardFunction):
    """`reward` when the extracted answer is an integer (GSM8K answers all are), else 0."""

    def __init__(self, reward: float = 0.5, name: str = "gsm8k_integer"):
        super().__init__(name)
        self.reward = float(reward)

    def score(self, text, gold):
        return self.reward if is_integer_string(extract_answer(text)) else 0.0


# --------------------------------------------------------------------------- factories


def make_format_reward(per_tag: float = 0.2) -> FormatReward:
    """0.2 (by default) per tag present, as in the notebook: max 0.8."""
    return FormatReward(per_tag)


def make_strict_format_reward(reward: float = 0.5) -> RegexFormatReward:
    """`reward` when the completion is exactly the layout `<reasoning>\\n...\\n</reasoning>\\n<answer>\\n...
    \\n</answer>` (optionally one final newline), each tag once and in order."""
    return RegexFormatReward(STRICT_FORMAT_RE, reward, "gsm8k_strict_format")


def make_soft_format_reward(reward: float = 0.5) -> RegexFormatReward:
    """`reward` when the completion is a reasoning block then an answer block, whitespace anywhere."""
    return RegexFormatReward(SOFT_FORMAT_RE, reward, "gsm8k_soft_format")


def make_hash_format_reward(reward: float = 0.2) -> HashFormatReward:
    return HashFormatReward(reward)


def make_trailing_penalty(penalty: float = -0.5) -> TrailingTextPenalty:
    return TrailingTextPenalty(penalty)


def make_correctness_reward(
    exact: float = 2.0, numeric: float = 1.5, wrong: float = 0.0, answer_key: str = "answer"
) -> CorrectnessReward:
    """2.0 exact / 1.5 numerically equal / 0.0 otherwise, reading the gold from column `answer_key`."""
    return CorrectnessReward(exact, numeric, wrong, answer_key)


def make_integer_reward(reward: float = 0.5) -> IntegerReward:
    return IntegerReward(reward)


gsm8k_format = make_format_reward()
gsm8k_strict_format = make_strict_format_reward()
gsm8k_soft_format = make_soft_format_reward()
gsm8k_hash_format = make_hash_format_reward()
gsm8k_trailing_penalty = make_trailing_penalty()
gsm8k_correctness = make_correctness_reward()
gsm8k_integer = make_integer_reward()


# --------------------------------------------------------------------------- data


def to_training_format(gsm8k_answer: str) -> str:
    """Rewrite a raw GSM8K answer into the training target.

    `"Natalia sold 48/2 = <<48/2=24>>24 clips...\\n#### 72"` becomes
    `"<reasoning>\\nNatalia sold 48/2 = 24 clips...\\n</reasoning>\\n<answer>\\n#### 72\\n</answer>"`:
    the worked lines without calculator annotations (the model should not learn to emit them), and
    the final answer after `####` inside the answer block. Raises ValueError without `####`, since
    this is data preparation, not scoring.
    """
    if not isinstance(gsm8k_answer, str) or "####" not in gsm8k_answer:
        raise ValueError(f"not a GSM8K answer (no '#### N' line): {short_repr(gsm8k_answer)}")
    worked, _, final = gsm8k_answer.rpartition("####")
    gold = extract_gold("####" + final)
    if gold is None:
        raise ValueError(f"no final number after '####': {short_repr(gsm8k_answer)}")
    lines = [_ANNOTATION_RE.sub("", line).strip() for line in worked.splitlines()]
    reasoning = "\n".join(line for line in lines if line)
    return f"<reasoning>\n{reasoning}\n</reasoning>\n<answer>\n#### {gold}\n</answer>"
