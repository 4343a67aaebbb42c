"""Rewards by name, open-r1 style: `get("gsm8k_correctness")`, `preset("gsm8k")`, `@register("mine")`.

An entry holds a ready instance, a factory, or both. `get(name)` returns the instance;
`get(name, **params)` builds a new one from the factory (`get("gsm8k_correctness", exact=3.0)`). An
entry that is only a factory with required parameters (TRL's `soft_overlong` needs
`max_completion_len` and `soft_punish_cache`) must be given them, and says so when it is not.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from . import generic, gsm8k, process
from .base import short_repr


@dataclass(frozen=True)
class Entry:
    name: str
    instance: Callable | None = None
    factory: Callable | None = None

    def required_params(self) -> list[str]:
        if self.factory is None:
            return []
        try:
            params = inspect.signature(self.factory).parameters.values()
        except (TypeError, ValueError):
            return []
        return [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def signature(self) -> str:
        try:
            return f"{self.name}{inspect.signature(self.factory)}" if self.factory else self.name
        except (TypeError, ValueError):
            return self.name


_REGISTRY: dict[str, Entry] = {}

_PRESETS: dict[str, tuple[tuple[str, float], ...]] = {
    # The seeds' scoring (aburkov's GRPO-from-scratch notebook): 0.2 per tag + 2.0 exact / 1.5 numeric.
    "gsm8k": (("gsm8k_format", 1.0), ("gsm8k_correctness", 1.0)),
    # The seeds' lm-eval variant: also +0.2 for `####` in the answer, -0.5 for text after </answer>.
    "gsm8k_lm_eval": (
        ("gsm8k_format", 1.0),
        ("gsm8k_hash_format", 1.0),
        ("gsm8k_trailing_penalty", 1.0),
        ("gsm8k_correctness", 1.0),
    ),
}


def register(
    name: str, fn: Callable | None = None, *, factory: bool = False, process: bool = False, overwrite: bool = False
):
    """Register a reward function under `name`; usable as a decorator or called directly.

        @reward_fns.register("shouting")
        def shouting(prompts, completions, **kwargs):
            return [float(c.isupper()) for c in completions]

    With `factory=True`, `fn` builds reward functions from keyword parameters and `get(name, **params)`
    calls it. `process=True` marks a step-level reward (see `reward_fns.process`). Registering a
    taken name raises ValueError unless `overwrite=True`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("a reward name must be a non-empty string")

    def add(obj: Callable) -> Callable:
        if not callable(obj):
            raise TypeError(f"cannot register {obj!r} as reward {name!r}: it is not callable")
        if name in _REGISTRY and not overwrite:
            raise ValueError(f"reward {name!r} is already registered; pass overwrite=True to replace it")
        if process and not factory:
            obj.process_reward = True
        _REGISTRY[name] = Entry(name, factory=obj) if factory else Entry(name, instance=obj)
        return obj

    return add if fn is None else add(fn)


def _add_builtin(name: str, instance: Callable | None, factory: Callable | None) -> None:
    _REGISTRY[name] = Entry(name, instance, factory)


def names() -> list[str]:
    """All registered reward names, sorted."""
    return sorted(_REGISTRY)


def _entry(name: str) -> Entry:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown reward {short_repr(name)}; valid names: {', '.join(names())}") from None


def get(name: str, **params) -> Callable:
    """The reward function registered as `name`, or a new one built with `params`."""
    entry = _entry(name)
    if not params:
        if entry.instance is not None:
            return entry.instance
        missing = entry.required_params()
        if missing:
            raise TypeError(
                f"reward {name!r} is a factory and needs parameters {missing}: "
                f"get({name!r}, {', '.join(f'{p}=...' for p in missing)}). Signature: {entry.signature()}"
            )
        return entry.factory()
    if entry.factory is None:
        raise TypeError(f"reward {name!r} takes no parameters (it is a plain function); got {sorted(params)}")
    try:
        inspect.signature(entry.factory).bind(**params)
    except TypeError as exc:
        raise TypeError(f"reward {name!r}: {exc}. Signature: {entry.signature()}") from None
    except ValueError:
        pass  # no introspectable signature: let the call itself complain
    return entry.factory(**params)


def presets() -> list[str]:
    return sorted(_PRESETS)


def preset(name: str) -> tuple[list[Callable], list[float]]:
    """`(functions, weights)` for a named combination, e.g. for `GRPOTrainer(reward_funcs=functions,
    args=GRPOConfig(reward_weights=weights))`; the total reward is the weighted sum TRL computes."""
    try:
        spec = _PRESETS[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown preset {short_repr(name)}; valid presets: {', '.join(presets())}") from None
    return [get(n) for n, _ in spec], [float(w) for _, w in spec]


for _name, _instance, _factory in (
    ("gsm8k_format", gsm8k.gsm8k_format, gsm8k.make_format_reward),
    ("gsm8k_strict_format", gsm8k.gsm8k_strict_format, gsm8k.make_strict_format_reward),
    ("gsm8k_soft_format", gsm8k.gsm8k_soft_format, gsm8k.make_soft_format_reward),
    ("gsm8k_hash_format", gsm8k.gsm8k_hash_format, gsm8k.make_hash_format_reward),
    ("gsm8k_trailing_penalty", gsm8k.gsm8k_trailing_penalty, gsm8k.make_trailing_penalty),
    ("gsm8k_correctness", gsm8k.gsm8k_correctness, gsm8k.make_correctness_reward),
    ("gsm8k_integer", gsm8k.gsm8k_integer, gsm8k.make_integer_reward),
    ("math_equivalence", generic.math_equivalence, generic.make_math_equivalence),
    ("length_penalty", generic.length_penalty, generic.make_length_penalty),
    ("soft_overlong", None, generic.soft_overlong),
    ("arithmetic_steps", process.arithmetic_steps, process.make_arithmetic_steps),
):
    _add_builtin(_name, _instance, _factory)
