"""Answer extraction and number normalisation for GSM8K-style rewards.

Specification: docs/algorithms.md, "GSM8K answer format and rewards". Everything here is total:
malformed, hostile or non-string input gives `None`, never an exception, because these helpers run
inside reward functions that must not crash a training run.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

TAGS = ("<reasoning>", "</reasoning>", "<answer>", "</answer>")
_TAG_RE = re.compile(r"</?(?:reasoning|answer)>")

# One number, as a model or GSM8K writes it: optional sign, thousands commas, decimals, and an optional
# tight or spaced simple fraction "1/2". ASCII only: `\d` would also match e.g. Arabic-Indic digits.
# The look-behind keeps "x-3" or "v2" from yielding a number glued to a word.
_NUMBER_RE = re.compile(
    r"(?<![\w.])(?P<sign>[-+]\s*)?\$?\s*(?P<num>\d+(?:\.\d+)?|\.\d+)(?:\s*/\s*(?P<den>\d+(?:\.\d+)?))?",
    re.ASCII,
)
# Thousands separators: a comma followed by exactly three digits ("1,234" but not "1,2,3").
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))", re.ASCII)
_LATEX_FRAC_RE = re.compile(r"\\d?frac\{([^{}]*)\}\{([^{}]*)\}")
_LATEX_CMD_RE = re.compile(r"\\(?:[a-zA-Z]+|.)|[{}]", re.DOTALL)
# LaTeX that wraps or spaces a number without changing it; any other command (\sqrt, \pi, \cdot)
# makes the text an expression, which is not "one number" (math_equivalence handles those).
_HARMLESS_LATEX = frozenset(
    [
        "\\boxed",
        "\\text",
        "\\textbf",
        "\\mathrm",
        "\\mathbf",
        "\\left",
        "\\right",
        "\\displaystyle",
        "\\$",
        "\\%",
        "\\,",
        "\\!",
        "\\ ",
        "\\;",
        "{",
        "}",
    ]
)
# The flexible fallback (lm-eval's "flexible-extract" idea): the last number in the text.
_LAST_NUMBER_RE = re.compile(r"-?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\$?\.\d+", re.ASCII)
# Unicode minus and en dash, and the full-width forms CJK text uses ("４２", "－３", "＄５").
_MINUS_CHARS = str.maketrans(
    {"\u2212": "-", "\u2013": "-", "\uff0d": "-", "\uff0b": "+", "\uff04": "$", "\uff0e": ".", "\uff0c": ","}
    | {chr(0xFF10 + i): str(i) for i in range(10)}
)

MAX_FRACTION_DIGITS = 50  # a fraction with longer parts is not an answer; it would only cost time


# --------------------------------------------------------------------------- completions


def completion_text(completion: object) -> str:
    """The text of one completion, whatever TRL passed.

    Plain strings are returned as is. A conversational completion (a list of message dicts) gives the
    content of its last assistant message, or, when no message has a role, all contents joined. A
    content given as a list of parts (`{"type": "text", "text": ...}`) is joined. Anything else is "".
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role") == "assistant"]
        if assistant:
            return _content_text(assistant[-1].get("content"))
        return "\n".join(_content_text(m.get("content")) for m in messages)
    return ""


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "".join(parts)
    return ""


# --------------------------------------------------------------------------- extraction


def answer_block(text: str) -> str | None:
    """The content of the last closed `<answer>...</answer>` block, other tags removed; None if none.

    Nested or repeated tags resolve to the innermost opener before the last `</answer>`:
    `<answer><answer>5</answer></answer>` gives "5".
    """
    end = text.rfind("</answer>")
    if end < 0:
        return None
    start = text.rfind("<answer>", 0, end)
    if start < 0:
        return None
    return _TAG_RE.sub("", text[start + len("<answer>") : end])


def _after_hash(text: str) -> str | None:
    """The answer after the last `####`: its line, or the first number on it when the line says more."""
    rest = text[text.rfind("####") + 4 :].lstrip()
    line = rest.split("\n", 1)[0].strip()
    if not line:
        return None
    if normalize_number(line) is None:
        m = _LAST_NUMBER_RE.search(line)
        if m is not None:
            return m.group(0)
    return line


def extract_answer(text: object) -> str | None:
    """The model's final answer as a string, most specific source first.

    1. the last `<answer>` block, and inside it the text after `####` when there is one;
    2. the text after the last `####` anywhere;
    3. the last number in the text (lm-eval's flexible extraction).
    An empty block falls through to the next source. Returns None when nothing is found.
    """
    if not isinstance(text, str):
        return None
    block = answer_block(text)
    if block is not None:
        found = _after_hash(block) if "####" in block else (block.strip() or None)
        if found is not None:
            return found
    if "####" in text:
        found = _after_hash(text)
        if found is not None:
            return found
    last = None
    for last in _LAST_NUMBER_RE.finditer(text):
        pass
    return last.group(0) if last is not None else None


def extract_gold(answer: object) -> str | None:
    """The gold answer string from a raw GSM8K `answer` (`... #### N`) or an already extracted value.

    Returns None (the caller abstains) when there is no usable number: None, NaN, booleans, empty
    strings, text without exactly one number and no `####`, or `####` followed by nothing numeric.
    """
    if isinstance(answer, bool) or answer is None:
        return None
    if isinstance(answer, int):
        gold = str(answer) if abs(answer).bit_length() < 10_000 else None
    elif isinstance(answer, float):
        if not math.isfinite(answer):
            return None
        gold = str(int(answer)) if answer.is_integer() else repr(answer)
    elif isinstance(answer, (Fraction, Decimal)):
        gold = str(answer)
    elif isinstance(answer, str):
        gold = _after_hash(answer) if "####" in answer else answer.strip()
    else:
        return None
    if not gold or normalize_number(gold) is None:
        return None
    return gold


# --------------------------------------------------------------------------- normalisation


def normalize_number(s: object) -> str | None:
    """A canonical string for the one number in `s`, or None when `s` holds no number or several.

    Strips `$`, `%`, commas between thousands, a leading `+`, spaces, units and surrounding words
    ("42 apples", "The answer is 42."), trailing zeros (`3.0`, `3.00` -> `3`), and evaluates a simple
    fraction (`1/2` -> `0.5`; one that does not terminate stays `p/q` in lowest terms). Two strings
    hold the same number exactly when their canonical forms are equal. Works on the digits as text, so
    a 10,000-digit answer costs no big-integer conversion.
    """
    if isinstance(s, bool) or s is None:
        return None
    if isinstance(s, (int, float, Fraction, Decimal)):
        s = extract_gold(s)
        if s is None:
            return None
    if not isinstance(s, str):
        return None
    text = s.translate(_MINUS_CHARS)
    if "\\" in text:
        text = _LATEX_FRAC_RE.sub(r"\1/\2", text)
        if any(m.group(0) not in _HARMLESS_LATEX for m in _LATEX_CMD_RE.finditer(text)):
            return None
        text = _LATEX_CMD_RE.sub(" ", text)
    # Collapsing whitespace (last, after the substitutions that insert spaces) keeps every `\s*` in
    # _NUMBER_RE to one character, so a long run of spaces cannot make it backtrack quadratically.
    text = _THOUSANDS_RE.sub("", " ".join(text.split()))
    matches = _NUMBER_RE.finditer(text)
    first = next(matches, None)
    if first is None or next(matches, None) is not None:
        return None
    negative = (first.group("sign") or "").startswith("-")
    if first.group("den") is None:
        return _canonical_decimal(first.group("num"), negative)
    return _canonical_fraction(first.group("num"), first.group("den"), negative)


def _canonical_decimal(digits: str, negative: bool) -> str:
    whole, _, frac = digits.partition(".")
    whole, frac = whole.lstrip("0") or "0", frac.rstrip("0")
    out = whole + ("." + frac if frac else "")
    return "-" + out if negative and out != "0" else out


def _canonical_fraction(num: str, den: str, negative: bool) -> str | None:
    if len(num) > MAX_FRACTION_DIGITS or len(den) > MAX_FRACTION_DIGITS:
        return None
    denominator = Fraction(den)
    if denominator == 0:
        return None
    value = Fraction(num) / denominator
    if negative:
        value = -value
    q = value.denominator
    twos = fives = 0
    while q % 2 == 0:
        q //= 2
        twos += 1
    while q % 5 == 0:
        q //= 5
        fives += 1
    if q != 1:  # does not terminate in decimal
        return f"{value.numerator}/{value.denominator}"
    places = max(twos, fives)
    scaled = abs(value.numerator) * 10**places // value.denominator
    text = str(scaled).rjust(places + 1, "0")
    digits = text[: len(text) - places] + ("." + text[len(text) - places :] if places else "")
    return _canonical_decimal(digits, value < 0)


def numbers_equal(a: object, b: object) -> bool:
    """True when both hold exactly one number and the numbers are equal after normalisation."""
    na = normalize_number(a)
    return na is not None and na == normalize_number(b)


def is_integer_string(s: object) -> bool:
    """True when `s` holds exactly one number and it is an integer (`"1,080"`, `"-3"`, `"$5.00"`)."""
    n = normalize_number(s)
    return n is not None and "." not in n and "/" not in n
