"""A small, safe arithmetic evaluator and the finder of arithmetic claims in free text.

Model output is untrusted, so nothing here calls `eval()`: a tokenizer and a recursive-descent parser
evaluate `+ - * / //`, parentheses, unary signs, decimals, thousands commas, `%` (as /100) and `$`
(ignored). Arithmetic is `decimal` at 60 significant digits: exact for everything but non-terminating
division, whose error (~1e-59 relative) the comparisons absorb; `fractions.Fraction` was ten times
slower and dominated the cost of a batch. Hard limits on token count, nesting depth and digit
count keep hostile input (10k digits, 10k parentheses) cheap; anything outside the grammar raises
`ArithError`, which callers treat as "no claim", never as a wrong claim.

A *claim* is `lhs = rhs` (or a chain `a = b = c`), written either as a GSM8K calculator annotation
`<<48/2=24>>` or inline as `3*4 = 12 + 1 = 13`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import (
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DecimalException,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from functools import lru_cache
from itertools import pairwise

MAX_CHARS = 512
MAX_TOKENS = 256
MAX_DEPTH = 32
MAX_DIGITS = 30  # per number; beyond this a literal is not arithmetic a reasoning step would check

# Python's Decimal parser accepts underscores, exponents and "NaN"; ours must not, hence the strict
# regex. Commas must group thousands exactly, so "1,2" is rejected rather than read as 12.
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+"
# A fraction written tight, "1/3", is one literal: people write "25 / 1/3 = 75" meaning 25/(1/3), and
# for every other placement reading it as one literal gives the same value as left-to-right division.
# Not when a `%` follows: "168/20%" is 168/(20%). The atomic group stops "80%" backtracking to "8".
_TOKEN_RE = re.compile(
    rf"\s*(?:(?P<num>{_NUM})(?:/(?P<den>(?>{_NUM}))(?!\s*%))?|(?P<op>//|[-+*/()%×÷–−])|(?P<dollar>\$))",
    re.ASCII,
)
_OP_ALIASES = {"×": "*", "÷": "/", "–": "-", "−": "-"}


_CTX = Context(prec=60, Emax=10**6, Emin=-(10**6), traps=[InvalidOperation, DivisionByZero, Overflow])
_EPS = Decimal("1e-40")  # comparisons: far above the 60-digit rounding error, far below any written digit


class ArithError(ValueError):
    """The text is not an expression of the supported grammar (or exceeds a limit)."""


def tokenize(expr: str) -> list[tuple[str, object]]:
    """Split `expr` into ("num", Decimal) and ("op", str) tokens; `$` is dropped."""
    tokens: list[tuple[str, object]] = []
    pos, end = 0, len(expr.rstrip())
    while pos < end:
        m = _TOKEN_RE.match(expr, pos)
        if m is None or m.end() == pos:
            raise ArithError(f"unexpected character at {pos}: {expr[pos : pos + 10]!r}")
        pos = m.end()
        if m.group("num") is not None:
            value = _number(m.group("num"))
            if m.group("den") is not None:
                den = _number(m.group("den"))
                if den == 0:
                    raise ArithError("division by zero")
                value = _CTX.divide(value, den)
            tokens.append(("num", value))
        elif m.group("op") is not None:
            op = m.group("op")
            tokens.append(("op", _OP_ALIASES.get(op, op)))
        if len(tokens) > MAX_TOKENS:
            raise ArithError("expression too long")
    return tokens


def _number(text: str) -> Decimal:
    whole, _, frac = text.replace(",", "").partition(".")
    if len(whole) + len(frac) > MAX_DIGITS:
        raise ArithError("number too long")
    if len(whole) > 1 and whole[0] == "0":
        raise ArithError("leading zero: a clock time or a code, not a quantity")  # "0900-0130"
    return Decimal(f"{whole or '0'}.{frac}" if frac else whole or "0")


class _Parser:
    """expr := term (('+'|'-') term)* ; term := unary (('*'|'/'|'//') unary)* ;
    unary := ('+'|'-') unary | primary '%'* ; primary := NUM | '(' expr ')'."""

    def __init__(self, tokens: list[tuple[str, object]]):
        self.tokens, self.i, self.depth = tokens, 0, 0

    def peek(self) -> object:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, object]:
        if self.i >= len(self.tokens):
            raise ArithError("unexpected end of expression")
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def parse(self) -> Decimal:
        if not self.tokens:
            raise ArithError("empty expression")
        value = self.expr()
        if self.i != len(self.tokens):
            raise ArithError(f"unexpected token {self.peek()!r}")
        return value

    def expr(self) -> Decimal:
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            rhs = self.term()
            value = _CTX.add(value, rhs) if op == "+" else _CTX.subtract(value, rhs)
        return value

    def term(self) -> Decimal:
        value = self.unary()
        while self.peek() in ("*", "/", "//"):
            op = self.take()[1]
            rhs = self.unary()
            if op == "*":
                value = _CTX.multiply(value, rhs)
            elif rhs == 0:
                raise ArithError("division by zero")
            elif op == "/":
                value = _CTX.divide(value, rhs)
            else:  # Python's floor division (Decimal's own `//` truncates toward zero)
                value = _CTX.divide(value, rhs).to_integral_value(rounding=ROUND_FLOOR, context=_CTX)
        return value

    def unary(self) -> Decimal:
        if self.peek() in ("+", "-"):
            op = self.take()[1]
            self._enter()
            value = self.unary()
            self.depth -= 1
            return _CTX.minus(value) if op == "-" else value
        value = self.primary()
        while self.peek() == "%":
            self.take()
            value = value.scaleb(-2, _CTX)
        return value

    def primary(self) -> Decimal:
        kind, value = self.take()
        if kind == "num":
            return value  # type: ignore[return-value]
        if value == "(":
            self._enter()
            inner = self.expr()
            if self.take()[1] != ")":
                raise ArithError("missing ')'")
            self.depth -= 1
            return inner
        raise ArithError(f"unexpected token {value!r}")

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ArithError("nesting too deep")


def evaluate(expr: str) -> Decimal:
    """Evaluate an arithmetic expression exactly; raise `ArithError` for anything else.

    >>> evaluate("$1,200 * 15% + (3 - -1) / 2")
    Decimal('182.00')
    """
    if len(expr) > MAX_CHARS:
        raise ArithError("expression too long")
    result = _evaluate_cached(expr)
    if isinstance(result, ArithError):
        raise result
    return result


# Batches repeat expressions (a group's completions share most of their steps), and parsing
# dominates the cost of scoring; failures are cached too. MAX_CHARS bounds the keys.
@lru_cache(maxsize=16384)
def _evaluate_cached(expr: str) -> Decimal | ArithError:
    try:
        return _Parser(tokenize(expr)).parse()
    except ArithError as exc:
        return exc
    except DecimalException as exc:  # overflow and the like, from the traps set in _CTX
        return ArithError(f"arithmetic error: {type(exc).__name__}")


# --------------------------------------------------------------------------- claim checking

_LITERAL_RE = re.compile(
    r"\s*\$?\s*(?P<neg>[-–−]?)\s*\$?(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d*))?|\.(\d+))\s*(%?)\s*",
    re.ASCII,
)


def _literal(text: str) -> tuple[Decimal, int, bool] | None:
    """(value, decimals written, has %) when `text` is one number literal, else None."""
    m = _LITERAL_RE.fullmatch(text)
    if m is None:
        return None
    try:
        value = _number(m.group("num"))
    except ArithError:
        return None
    if m.group("neg"):
        value = _CTX.minus(value)
    return value, len(m.group(3) or m.group(4) or ""), bool(m.group(5))


def _close(a: Decimal, b: Decimal) -> bool:
    return abs(_CTX.subtract(a, b)) <= _EPS * max(1, abs(b))


def _rounds_to(value: Decimal, claimed: Decimal, decimals: int) -> bool:
    """`value` rounded half up, or truncated, to `decimals` places equals `claimed`. Tried at
    value +- eps too, so 60-digit noise (1/3*0.375 = 0.12499...9) cannot flip a rounding decision."""
    quantum = Decimal(1).scaleb(-decimals)
    for v in (value, _CTX.add(value, _EPS), _CTX.subtract(value, _EPS)):
        for mode in (ROUND_HALF_UP, ROUND_DOWN):
            try:
                if v.quantize(quantum, rounding=mode, context=_CTX) == claimed:
                    return True
            except DecimalException:
                return False
    return False


def claim_holds(value: Decimal, rhs: str) -> bool:
    """Does the computed `value` match what `rhs` claims?

    Exact equality, or, when `rhs` is one literal written with d >= 1 decimals, equality after
    rounding (half up) or truncating `value` to d decimals: "10/3 = 3.33" and "2/3 = 0.66" are how
    people write results. An integer literal gets no such slack ("7/2 = 3" is wrong). A literal with
    `%` may be meant as a percentage or as the bare number ("10/20*100 = 50%"), so both are accepted.
    """
    lit = _literal(rhs)
    if lit is None:
        return _close(value, evaluate(rhs))
    claimed, decimals, percent = lit
    candidates = [(claimed.scaleb(-2), decimals + 2), (claimed, decimals)] if percent else [(claimed, decimals)]
    for c, d in candidates:
        if _close(value, c):
            return True
        if decimals >= 1 and _rounds_to(value, c, d):
            return True
    return False


def _link_holds(lhs: str, rhs: str) -> bool:
    if claim_holds(evaluate(lhs), rhs):
        return True
    # "%" on the left is as often a label as an operator: "$7500/75% = $100", "1.2 x 100% = 120".
    if "%" in lhs and claim_holds(evaluate(lhs.replace("%", "")), rhs):
        return True
    # A running computation: "3*4 = 12 + 1 = 13" claims 3*4 = 12, then 12 + 1 = 13.
    lead = _LEADING_NUM_RE.match(rhs)
    return lead is not None and claim_holds(evaluate(lhs), lead.group(1))


_LEADING_NUM_RE = re.compile(rf"\s*\$?\s*({_NUM})\s*%?(?=\s*(?://|[-+*/×÷–−]))", re.ASCII)


def check_chain(segments: list[str], *, literal_links: bool = False) -> list[bool]:
    """Judge the links of a chain `s0 = s1 = ... = sn`; one bool per checkable link.

    A link whose sides do not both parse is skipped (neither right nor wrong). Unless
    `literal_links`, a link between two bare literals ("2 hours = 120 minutes") is not arithmetic and
    is skipped, and so is a leading bare literal ("Week 2 = 35 + 35", "20 = A"), which in prose is a
    label or an unknown rather than a result. Calculator annotations pass `literal_links=True`:
    there `<<12=12>>` is a (trivial) claim.
    """
    results: list[bool] = []
    for i, (lhs, rhs) in enumerate(pairwise(segments)):
        try:
            evaluate(lhs)
            evaluate(rhs)
        except ArithError:
            continue
        if not literal_links and _literal(lhs) is not None and (i == 0 or _literal(rhs) is not None):
            continue
        try:
            results.append(_link_holds(lhs, rhs))
        except ArithError:
            continue
    return results


# --------------------------------------------------------------------------- finding claims in text

_ANNOTATION_RE = re.compile(r"<<([^<>\n]{0,400}?)>>")
# "0.2 x 50" and "3 X 4" mean multiplication only between numbers; "2x + 3" stays a variable.
_TIMES_RE = re.compile(r"(?<=[\d)%])[ \t]*[xX][ \t]*(?=[\d($.])", re.ASCII)
# Arithmetic runs: digits, operators, spaces, and `,`/`.` only inside numbers (so a sentence's
# comma or full stop ends the run instead of corrupting the last number).
# A run starts at a non-space, else every space between two words would be a run to look at.
_RUN_RE = re.compile(r"(?:[0-9$%+\-*/×÷–−=()]|\.(?=\d))(?:[0-9$%+\-*/×÷–−=() \t]|(?<=\d),(?=\d)|\.(?=\d))*", re.ASCII)
# A word right before a run that makes the run's first number the right operand of something
# outside it: "60 students x 2/3 = 40", "10% of 150 = 15".
_OPERATOR_WORD_RE = re.compile(r"(?:^|\s)(?:x|of|times|by|per|plus|minus|over|into)\s*$", re.IGNORECASE)
# A mixed number split by the run: "12 x 1 and 1/4 = 15" (but "3 apples and 4 + 5 = 9" is a claim).
_MIXED_BEFORE_RE = re.compile(r"\d\s+and\s*$")
_FRACTION_START_RE = re.compile(r"\(?\s*\d+\s*/\s*\d")
_BINARY_START = set("+*/×÷")
_MINUS = set("-–−")
# After a run: "= 5 and 1/3" (a mixed number) or "= 5A" (a coefficient) leave the last side incomplete.
_MIXED_AFTER_RE = re.compile(r"\s*and\s*[$(]?\d")
_GLUE = set(":_^√∛")
_BULLET_RE = re.compile(r"[-*+]\s")
_RANGE_RE = re.compile(r"(\d{1,6})[-–](\d{1,6})")


@dataclass(frozen=True)
class StepClaims:
    """The verdicts on one step's claims: calculator annotations and inline ones."""

    annotations: tuple[bool, ...]
    inline: tuple[bool, ...]

    @property
    def all(self) -> tuple[bool, ...]:
        return self.annotations + self.inline


def _truncated_left(text: str, start: int, run: str) -> bool:
    first = run.lstrip()
    before = text[max(0, start - 40) : start]  # a window: slicing the whole prefix per run is quadratic
    if start > 0 and (before[-1] in _GLUE or (before[-1].isascii() and before[-1].isalnum())):
        return True  # glued to a word or symbol: "D3 = ...", "6:00+48", "√(144)" (not CJK: "答：3+4=7")
    if _OPERATOR_WORD_RE.search(before):
        return True
    if _MIXED_BEFORE_RE.search(before) and _FRACTION_START_RE.match(first):
        return True
    if before.rstrip()[-1:].isalpha():
        m = _RANGE_RE.fullmatch(run.split("=")[0].strip())
        if m is not None and int(m.group(1)) < int(m.group(2)):
            return True  # "Weeks 1-2 = ...": an ascending range is a label ("had 50-8" still subtracts)
    if first[:1] in _BINARY_START:
        return True
    # "items - 2 = 8": a spaced or word-attached minus is binary, its left operand outside the run.
    return first[:1] in _MINUS and (first[1:2].isspace() or before.rstrip()[-1:].isalnum())


def _truncated_right(text: str, end: int, run: str) -> bool:
    after = text[end : end + 40]
    if after and not run[-1].isspace() and (after[0].isascii() and (after[0].isalpha() or after[0] in ":_")):
        return True
    return _MIXED_AFTER_RE.match(after) is not None


def find_claims(step: str) -> StepClaims:
    """Judge every arithmetic claim in `step`: calculator annotations `<<a*b=c>>` and inline chains
    such as `3*4 = 12 + 1 = 13`, whose runs are cut at words and sentence punctuation."""
    annotations: list[bool] = []
    for body in _ANNOTATION_RE.findall(step):
        annotations.extend(check_chain(body.split("="), literal_links=True))
    text = _TIMES_RE.sub(" * ", _ANNOTATION_RE.sub(" ", step))
    line_start = len(text) - len(text.lstrip())
    inline: list[bool] = []
    for m in _RUN_RE.finditer(text):
        run = m.group(0)
        if "=" not in run:
            continue
        if m.start() == line_start and _BULLET_RE.match(run):
            run = run[1:]  # a markdown bullet, "- 3 * 4 = 12", not a minus sign
        segments = [s.strip() for s in run.split("=")]
        if _truncated_left(text, m.start(), run):
            segments = segments[1:]
        if _truncated_right(text, m.end(), run):
            segments = segments[:-1]
        inline.extend(check_chain(segments))
    return StepClaims(tuple(annotations), tuple(inline))
