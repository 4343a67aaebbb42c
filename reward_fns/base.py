"""The reward-function base: TRL's calling contract, gold-column handling, and the never-raise rule.

TRL calls `f(prompts=..., completions=..., completion_ids=..., **columns, trainer_state=..., ...)`
and expects one `float | None` per completion (None: this function abstains on that row). Rewards
here are callable class instances rather than closures so they stay picklable (TRL's async rollout
worker pickles reward functions into a child process) and carry a stable `__name__` for logging.

Two kinds of failure are told apart:
- A config error (the gold column is missing, or its length does not match) raises `ValueError`
  at once: it is the same on every step, and training on it silently would waste the run.
- A data or model-output problem (an unparseable gold, garbage completions, a bug in a parser on an
  input no one foresaw) never raises: the row gets None (or a neutral value) and a warning is
  issued once per function instance, so a 10,000-step run does not flood the log.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Iterable

from .parsing import completion_text, extract_gold

# Keyword arguments TRL adds that are not dataset columns; left out when listing the columns present.
TRAINER_KWARGS = frozenset({"trainer_state", "log_extra", "log_metric", "environments", "completion_ids"})


def short_repr(value: object, limit: int = 80) -> str:
    """repr for messages: truncated, and safe on values whose repr itself fails (a 10,000-digit int)."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RewardWarning(UserWarning):
    """A reward function abstained (unparseable gold) or hit an unexpected input; issued once."""


class RewardFunction:
    """Base class of outcome rewards: subclasses implement `score(text, gold)`.

    `needs_gold` says whether the function reads the gold column (`answer_key`, default "answer").
    `score` receives the completion text and, for gold-reading functions, the extracted gold string.
    """

    process_reward = False
    needs_gold = False

    def __init__(self, name: str, *, answer_key: str = "answer"):
        self.__name__ = name
        self.answer_key = answer_key
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"<reward {self.__name__}>"

    def score(self, text: str, gold: str | None) -> float | None:
        raise NotImplementedError

    def __call__(self, prompts=None, completions=None, **kwargs) -> list:
        texts = self.texts(completions)
        golds = self.golds(kwargs, len(texts)) if self.needs_gold else [None] * len(texts)
        out = []
        for text, gold in zip(texts, golds):
            if self.needs_gold and gold is None:
                out.append(self.abstain())
                continue
            try:
                out.append(self.score(text, gold))
            except Exception as exc:  # noqa: BLE001 - a reward must never take the run down
                self.warn_once("internal", f"{self.__name__}: {short_repr(exc)}; returning None (shown once).")
                out.append(self.abstain())
        return out

    def abstain(self):
        return None

    # ------------------------------------------------------------------ helpers for subclasses

    def texts(self, completions: object) -> list[str]:
        if completions is None:
            raise ValueError(f"{self.__name__} needs `completions` (the generated texts); none were passed.")
        if isinstance(completions, str):
            raise TypeError(f"{self.__name__}: `completions` must be a list of completions, got one string.")
        return [completion_text(c) for c in completions]

    def golds(self, kwargs: dict, n: int) -> list[str | None]:
        """The extracted gold answer per row (None where unparseable, with one warning)."""
        if self.answer_key not in kwargs:
            present = sorted(k for k in kwargs if k not in TRAINER_KWARGS)
            raise ValueError(
                f"{self.__name__} needs the dataset column {self.answer_key!r} (the gold answer), but it was "
                f"not passed. Columns present: {present}. Rename the gold column to {self.answer_key!r} or "
                f"build the reward with answer_key=<your column>."
            )
        raw = kwargs[self.answer_key]
        if isinstance(raw, (str, bytes, dict)) or not isinstance(raw, Iterable):
            raw = [raw] * n  # one gold for the whole batch
        raw = list(raw)
        if len(raw) != n:
            raise ValueError(f"{self.__name__}: column {self.answer_key!r} has {len(raw)} values for {n} completions.")
        golds = [self._safe_parse_gold(g) for g in raw]
        bad = [g for g, parsed in zip(raw, golds) if parsed is None]
        if bad:
            self.warn_once(
                "gold",
                f"{self.__name__}: could not read a gold answer from {self.answer_key!r} value "
                f"{short_repr(bad[0])}; returning None (abstain) for such rows. This warning is shown once.",
            )
        return golds

    def _safe_parse_gold(self, raw: object) -> str | None:
        try:
            return self.parse_gold(raw)
        except Exception:  # noqa: BLE001 - bad data abstains, it does not stop training
            return None

    def parse_gold(self, raw: object) -> str | None:
        """The gold answer string from one value of the gold column; None when unusable."""
        return extract_gold(raw)

    def warn_once(self, kind: str, message: str) -> None:
        if kind in self._warned:
            return
        self._warned.add(kind)
        warnings.warn(message, RewardWarning, stacklevel=3)


# ---------------------------------------------------------------------------------------- plain-text rewards

CONSTANT_PATIENCE = 20  # batches in a row with one value for every completion before the warning


class ConstantRewardWarning(RewardWarning):
    """A reward gave the same value to every completion of many batches in a row: no learning signal."""


class ConstantWatch:
    """Counts batches in a row whose rewards are all equal, and warns once after `patience` of them.

    GRPO-family advantages are rewards minus a group statistic, so a reward that never varies trains
    nothing, silently. The usual cause is a function that measured the wrong thing (e.g. `len(c)` of a
    conversational completion, which is a list of one message).
    """

    def __init__(self, name: str, patience: int = CONSTANT_PATIENCE):
        self.name, self.patience, self.streak, self.warned = name, patience, 0, False

    def update(self, rewards: list) -> None:
        if self.warned:
            return
        values = [r for r in rewards if r is not None]
        if len(values) < 2 or not all(isinstance(v, (int, float)) for v in values):
            return  # abstentions only, or step-level (process) rewards: nothing to compare
        self.streak = self.streak + 1 if len(set(values)) == 1 else 0
        if self.streak >= self.patience:
            self.warned = True
            warnings.warn(
                f"reward {self.name!r} gave every completion the same value ({short_repr(values[0])}) in "
                f"{self.streak} batches in a row: it gives no learning signal. If it reads `completions`, note "
                "that conversational prompts make each completion a list of messages: decorate it with "
                "@reward_fns.text_reward to receive plain strings.",
                ConstantRewardWarning,
                stacklevel=3,
            )


class Watched:
    """`fn` unchanged, plus a `ConstantWatch` on what it returns; keeps `__name__` and `process_reward`."""

    def __init__(self, fn, patience: int = CONSTANT_PATIENCE):
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)
        self.process_reward = bool(getattr(fn, "process_reward", False))
        self.watch = ConstantWatch(self.__name__, patience)

    def __repr__(self) -> str:
        return f"<watched {self.fn!r}>"

    def __call__(self, *args, **kwargs):
        out = self.fn(*args, **kwargs)
        if isinstance(out, list):
            self.watch.update(out)
        return out


def watch_constant(fn, patience: int = CONSTANT_PATIENCE):
    """`fn` wrapped to warn once when it gives every completion the same reward `patience` batches in a row."""
    return fn if isinstance(fn, (Watched, TextReward)) else Watched(fn, patience)


def _import_attr(module: str, qualname: str):
    import importlib

    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class TextReward:
    """A reward written for one completion as plain text: `fn(text, **columns) -> float | None`.

    TRL hands reward functions a batch whose completions are strings for plain-text prompts and lists of
    messages for conversational ones; this gives `fn` the completion's text either way, one row at a time.
    `fn` may also name dataset columns (`answer`, ...) or `prompt` (the prompt's text) as parameters; a
    `**kwargs` parameter receives every column. An exception in `fn` scores that row None (abstain) with
    one warning, so bad model output never stops training. Built by the `text_reward` decorator.
    """

    process_reward = False

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(f"text_reward needs a function, got {short_repr(fn)}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        params = inspect.signature(fn).parameters
        self.takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
        self.wanted = [n for n, p in list(params.items())[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        self.watch = ConstantWatch(self.__name__)
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return f"<text reward {self.__name__}>"

    def __reduce__(self):  # pickled by reference (TRL's async rollout worker pickles reward functions)
        return _import_attr, (self.__module__, self.__qualname__)

    def __call__(self, prompts=None, completions=None, **kwargs) -> list:
        if completions is None:
            raise ValueError(f"{self.__name__} needs `completions` (the generated texts); none were passed.")
        texts = [completion_text(c) for c in completions]
        columns = {k: v for k, v in kwargs.items() if k not in TRAINER_KWARGS and isinstance(v, list)
                   and len(v) == len(texts) and (self.takes_all or k in self.wanted)}
        if "prompt" in self.wanted and prompts is not None:
            columns["prompt"] = [completion_text(p) for p in prompts]
        out = []
        for i, text in enumerate(texts):
            try:
                value = self.fn(text, **{k: v[i] for k, v in columns.items()})
                out.append(None if value is None else float(value))
            except Exception as exc:  # noqa: BLE001 - a reward must never take the run down
                if "error" not in self._warned:
                    self._warned.add("error")
                    warnings.warn(f"{self.__name__}: {short_repr(exc)} on {short_repr(text, 60)}; scoring such rows "
                                  "None (abstain). This warning is shown once.", RewardWarning, stacklevel=2)
                out.append(None)
        self.watch.update(out)
        return out


def text_reward(fn):
    """Decorator: write a reward for one completion's plain text; see `TextReward`.

        @reward_fns.text_reward
        def short_answer(text):
            return 1 / (1 + len(text))
    """
    return TextReward(fn)
