"""Rewards by name, open-r1 style: `get("gsm8k_correctness")`, `preset("gsm8k")`, `@register("mine")`,
and `from_spec("length_penalty=0.5:max_length=200")` for the command line and YAML recipes.

An entry holds a ready instance, a factory, or both. `get(name)` returns the instance;
`get(name, **params)` builds a new one from the factory (`get("gsm8k_correctness", exact=3.0)`). An
entry that is only a factory with required parameters (TRL's `soft_overlong` needs
`max_completion_len` and `soft_punish_cache`) must be given them, and says so when it is not.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import os
import sys
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
    # aburkov's GRPO-from-scratch notebook: 0.2 per tag + 2.0 exact / 1.5 numeric.
    "gsm8k": (("gsm8k_format", 1.0), ("gsm8k_correctness", 1.0)),
    # The lm-eval-friendly variant: also +0.2 for `####` in the answer, -0.5 for text after </answer>.
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
        @reward_fns.text_reward          # `text` is the completion as a plain string, also for chat prompts
        def shouting(text):
            return float(text.isupper())

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
        close = difflib.get_close_matches(name, names(), n=3) if isinstance(name, str) else []
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise KeyError(f"unknown reward {short_repr(name)}; valid names: {', '.join(names())}.{hint}") from None


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


SPEC_HELP = (
    "NAME[=WEIGHT][:PARAM=VALUE...] with NAME a registered reward (reward_fns.names()), MODULE:FUNCTION, "
    "MODULE.FUNCTION or path/to/file.py:FUNCTION; PARAM=VALUE pairs build the reward from its factory, e.g. "
    "length_penalty=0.5:max_length=200"
)


def from_spec(spec) -> tuple[Callable, float]:
    """`(function, weight)` from a command-line or YAML reward spec; raises ValueError with the fix.

    A string is `NAME[=WEIGHT][:PARAM=VALUE...]`: `gsm8k_correctness`, `gsm8k_correctness=2`,
    `length_penalty=0.5:max_length=200`, `my_rewards:short_answer`, `my_rewards.short_answer=0.5`,
    `path/to/file.py:make_reward:scale=2`. With parameters, a registered name is built by `get(name, **params)`
    and an imported function is called as a factory, `function(**params)`. A YAML mapping
    `{name: ..., weight: ..., PARAM: VALUE}` says the same. Values are read as YAML scalars (`200` is an int).
    """
    if isinstance(spec, dict):
        spec = dict(spec)
        target = spec.pop("name", None)
        if not isinstance(target, str):
            raise ValueError(  # noqa: TRY004 - every bad spec is a ValueError, which the CLI reports in one line
                f"reward {short_repr(spec)} needs a 'name' key; a reward is {SPEC_HELP}.")
        return _build(target, spec.pop("weight", 1.0), spec, spec)
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"reward {short_repr(spec)}: a reward is {SPEC_HELP}.")
    parts = spec.split(":")
    head = parts[0].partition("=")[0]
    # `module:function`: the first part is not a registered name and carries no weight
    if len(parts) > 1 and head not in _REGISTRY and "=" not in parts[0]:
        name, _, weight = parts[1].partition("=")
        target, rest = f"{parts[0]}:{name}", parts[2:]
    else:
        target, _, weight = parts[0].partition("=")
        rest = parts[1:]
    params = {}
    for item in rest:
        key, eq, value = item.partition("=")
        if not eq or not key.isidentifier():
            raise ValueError(f"--reward {spec!r}: {item!r} is not PARAM=VALUE; a reward is {SPEC_HELP}.")
        params[key] = _scalar(value)
    return _build(target, weight or 1.0, params, spec)


def _scalar(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _build(target: str, weight, params: dict, spec) -> tuple[Callable, float]:
    try:
        weight = float(weight)
    except (TypeError, ValueError):
        raise ValueError(f"reward {short_repr(spec)}: the weight must be a number, as in --reward {target}=0.5 "
                         f"(got {short_repr(weight)}).") from None
    try:
        if target in _REGISTRY:
            return get(target, **params), weight
        fn = load(target)
        return (fn(**params) if params else fn), weight
    except KeyError as e:
        raise ValueError(e.args[0]) from None
    except (TypeError, ValueError) as e:  # wrong parameter names or values for the factory
        raise ValueError(f"reward {short_repr(spec)}: {e}") from None


def load(target: str) -> Callable:
    """The function named by `module:function`, `module.function` or `path/to/file.py:function`.

    Modules are imported with the working directory on `sys.path`, as TRL's own scripts do."""
    if ":" in target:
        module, _, attr = target.rpartition(":")
    elif "." in target:
        module, _, attr = target.rpartition(".")
    else:
        _entry(target)  # raises the "unknown reward ... did you mean" KeyError
    try:
        if module.endswith(".py") or os.sep in module:
            path = os.path.abspath(os.path.expanduser(module))
            if not os.path.isfile(path):
                raise KeyError(f"unknown reward {target!r}: the file {module} does not exist.")
            name = os.path.splitext(os.path.basename(path))[0]
            loaded = importlib.util.spec_from_file_location(name, path)
            mod = importlib.util.module_from_spec(loaded)
            sys.modules.setdefault(name, mod)
            loaded.loader.exec_module(mod)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            mod = importlib.import_module(module)
    except ImportError as e:
        raise KeyError(f"unknown reward {target!r}: it is not a registered name ({', '.join(names())}) and "
                       f"module {module!r} cannot be imported ({e}).") from None
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise KeyError(f"unknown reward {target!r}: module {module!r} has no function {attr!r}.")
    return fn


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
