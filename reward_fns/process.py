"""Step-level (process) rewards for process-supervised GRPO.

Specification: docs/algorithms.md, "Process-supervised GRPO" (DeepSeekMath, https://huggingface.co/papers/2402.03300, section 4.1.3).

Contract: `f(prompts, completions, **kwargs) -> list[list[tuple[int, float]]]`, one list per
completion of `(offset, reward)` pairs, one per step, in order. `offset` is the character index of
the step's LAST character in the completion text (inclusive, so `0 <= offset < len(text)`): the
trainer maps it to the token containing that character, and an inclusive index always names a real
character, where an exclusive end could point one past the text. For a conversational completion
the text is `completion_text(completion)` (the last assistant message's content). A completion with
no steps gets [].
Process rewards carry `process_reward = True`; `is_process_reward(fn)` tells them from outcome rewards.
"""

from __future__ import annotations

from .arith import find_claims
from .base import RewardFunction, short_repr
from .parsing import TAGS, extract_answer, normalize_number


def split_steps(text: str, sep: str = "\n") -> list[tuple[int, int]]:
    """Spans `(start, end)` (Python slice bounds) of the non-empty steps of `text` split on `sep`.

    Each span is trimmed of surrounding whitespace, so `text[start:end]` is the step's text and
    `end - 1` its last visible character; whitespace-only pieces are not steps.
    """
    if not isinstance(text, str) or not text:
        return []
    if not sep:
        raise ValueError("sep must be a non-empty string")
    spans = []
    pos = 0
    while pos <= len(text):
        cut = text.find(sep, pos)
        stop = len(text) if cut < 0 else cut
        start, end = pos, stop
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end > start:
            spans.append((start, end))
        if cut < 0:
            break
        pos = cut + len(sep)
    return spans


def is_process_reward(fn: object) -> bool:
    """True for step-level reward functions (they return lists of (offset, reward) per completion).

    A user function is marked by `reward_fns.register(name, fn, process=True)` or by setting
    `fn.process_reward = True`."""
    return bool(getattr(fn, "process_reward", False))


class ArithmeticSteps(RewardFunction):
    """Judge each step's arithmetic: `correct` if all its claims hold, `wrong` if any fails. Steps are
    the non-empty pieces of the completion split on `sep` that make at least one claim; a piece with
    none (a format tag, the answer line, `98+47=` cut before its result) is not a step, unless `neutral`
    is a number, which then scores it. Claims are GSM8K calculator annotations `<<a*b=c>>` and inline
    chains `3*4 = 12 + 1 = 13`, checked by the safe evaluator in `reward_fns.arith` (never `eval`).

    Why claim-free lines are not steps by default: ProcessGRPO normalises the steps of a group, so a
    fixed 0 is not neutral. Where most claims of a group are wrong, the mean is negative and a 0
    normalises to a *positive* reward: on hard prompts a policy then learns to cut its arithmetic line
    before the result (`96+76=` / `2`), each cut piece scoring above a wrong claim (see
    docs/algorithms.md, Process-supervised GRPO). Left out, such a line changes no advantage.

    With `final_answer_weight=w`, the last line (a step then, with or without a claim) also gets `+w`
    when the extracted final answer equals the gold numerically and `-w` otherwise (rows with an
    unreadable gold get no such term, and one warning); the gold then comes from the column
    `answer_key`, which must be present.
    """

    process_reward = True

    def __init__(
        self,
        correct: float = 1.0,
        wrong: float = -1.0,
        neutral: float | None = None,
        final_answer_weight: float | None = None,
        sep: str = "\n",
        answer_key: str = "answer",
        name: str = "arithmetic_steps",
    ):
        if not isinstance(sep, str) or not sep:
            raise ValueError("sep must be a non-empty string")
        super().__init__(name, answer_key=answer_key)
        self.correct, self.wrong = float(correct), float(wrong)
        self.neutral = None if neutral is None else float(neutral)
        self.final_answer_weight = None if final_answer_weight is None else float(final_answer_weight)
        self.sep = sep
        self.needs_gold = final_answer_weight is not None

    def __call__(self, prompts=None, completions=None, **kwargs) -> list[list[tuple[int, float]]]:
        texts = self.texts(completions)
        golds = self.golds(kwargs, len(texts)) if self.needs_gold else [None] * len(texts)
        out = []
        for text, gold in zip(texts, golds):
            try:
                out.append(self.score(text, gold))
            except Exception as exc:  # noqa: BLE001 - a reward must never take the run down
                self.warn_once("internal", f"{self.__name__}: {short_repr(exc)}; no steps for this row (shown once).")
                out.append([])
        return out

    def step_reward(self, step: str) -> float | None:
        """The step's reward; `neutral` (None by default: not a step) when it makes no claim."""
        try:
            verdicts = find_claims(step).all
        except Exception as exc:  # noqa: BLE001 - one unforeseen step must not cost the others
            self.warn_once("internal", f"{self.__name__}: {short_repr(exc)}; step scored as one without a claim (shown once).")
            return self.neutral
        if not verdicts:
            return self.neutral
        return self.correct if all(verdicts) else self.wrong

    def score(self, text: str, gold: str | None) -> list[tuple[int, float]]:
        # A line holding only a format tag ("<reasoning>", "</answer>") is layout, not a reasoning step:
        # as a neutral step it would only dilute the group statistics the advantages are normalised by.
        spans = [(a, b) for a, b in split_steps(text, self.sep) if text[a:b] not in TAGS]
        scored = [(end - 1, self.step_reward(text[start:end])) for start, end in spans]
        if scored and self.final_answer_weight is not None and gold is not None:
            found = normalize_number(extract_answer(text))
            right = found is not None and found == normalize_number(gold)
            offset, reward = scored[-1]  # the last line carries the answer term, claim or not
            scored[-1] = (offset, (reward or 0.0) + (self.final_answer_weight if right else -self.final_answer_weight))
        return [(offset, reward) for offset, reward in scored if reward is not None]


def make_arithmetic_steps(
    correct: float = 1.0,
    wrong: float = -1.0,
    neutral: float | None = None,
    final_answer_weight: float | None = None,
    sep: str = "\n",
    answer_key: str = "answer",
) -> ArithmeticSteps:
    """A configured `arithmetic_steps` process reward (see `ArithmeticSteps`)."""
    return ArithmeticSteps(correct, wrong, neutral, final_answer_weight, sep, answer_key)


arithmetic_steps = make_arithmetic_steps()
