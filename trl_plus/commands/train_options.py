"""How `trl-plus train` reads its options: one flag convention (snake_case, kebab accepted, in YAML keys too),
repeated `--reward` flags that accumulate, YAML recipes, the default output folder, and config errors that name
the flags to change.
"""

from __future__ import annotations

import math
import os
import re

from trl_plus.cli import suggest
from trl_plus.errors import UserError

NO_MAX_PROMPT_LENGTH = ("--max_prompt_length: TRL 1.16 has no max_prompt_length and never truncates prompts: shorten "
                        "or filter long prompts in the data (trl-plus warns when a prompt plus max_completion_length "
                        "exceeds the model's context).")


def default_output_dir(algo: str, model: str | None) -> str:
    """`runs/ALGO-MODEL`, named after the model actually trained (the tiny model when none is given)."""
    name = os.path.basename(os.path.normpath(os.path.expanduser(model))) if model else "tiny"
    return os.path.join("runs", f"{algo}-{name.lower()}")


def pop_config(argv: list[str]) -> tuple[list[str], str | None]:
    out, path, i = [], None, 0
    while i < len(argv):
        name, eq, value = argv[i].partition("=")
        if name == "--config":
            if not eq and i + 1 >= len(argv):
                raise UserError("--config needs a YAML file path, as in --config examples/recipes/grpo.yaml.")
            path, i = (value, i + 1) if eq else (argv[i + 1], i + 2)
            continue
        out.append(argv[i])
        i += 1
    return out, path


def apply_yaml(parser, path: str, valid: set[str], algo: str) -> list[str]:
    """Set the YAML file's values as the parser's defaults (command-line values win); keys may use dashes."""
    import yaml

    try:
        with open(os.path.expanduser(path), encoding="utf-8") as f:
            config = yaml.safe_load(f)
    except FileNotFoundError:
        raise UserError(f"--config file {path} not found: pass an existing YAML file, e.g. from examples/recipes/."
                        ) from None
    except yaml.YAMLError as e:
        message = str(e).replace("\n", " ")
        raise UserError(f"the --config file is not valid YAML ({message}); fix the syntax: one 'option: value' per "
                        "line, as in the examples/ recipes.") from None
    if not isinstance(config, dict):
        raise UserError(f"--config {path} must contain a YAML mapping: 'option: value' lines, as in examples/recipes/.")
    config = {str(k).replace("-", "_"): v for k, v in config.items()}
    for key, value in (config.pop("env", None) or {}).items():  # TrlParser's `env:` mapping, kept
        os.environ[str(key)] = str(value)
    for key in config:
        if key == "max_prompt_length":
            raise UserError(NO_MAX_PROMPT_LENGTH)
        if f"--{key}" not in valid:
            raise UserError(f"unknown key {key!r} in {path}{suggest(key, valid)}; run 'trl-plus train {algo} "
                            "--help_all' for every valid option.")
    parser.set_defaults_with_config(**config)
    return list(config)


def explain_config_error(e: Exception, algo: str, argv: list[str], parser) -> str:
    """A config's __post_init__ error, with the flags to change where trl-plus knows them."""
    message = f"{type(e).__name__}: {e}".replace("\n", " ")
    match = re.search(r"generation_batch_size \((\d+)\) must be divisible by num_generations \((\d+)\)", message)
    if match:
        return batch_message(int(match[1]), int(match[2]), _value(parser, argv, "per_device_train_batch_size"),
                             _value(parser, argv, "gradient_accumulation_steps"))
    return message


def _value(parser, argv: list[str], name: str) -> int:
    for i, a in enumerate(argv):
        if a.split("=")[0] == f"--{name}":
            return int(a.split("=", 1)[1] if "=" in a else argv[i + 1])
    return int(parser._option_string_actions[f"--{name}"].default)


def batch_message(generation: int, groups: int, per_device: int, accumulation: int) -> str:
    """Which flags make the generation batch a whole number of prompt groups, nearest first."""
    processes = max(1, generation // max(1, per_device * accumulation))
    step = groups // math.gcd(groups, accumulation * processes)
    lower, upper = (per_device // step) * step, (per_device // step + 1) * step
    sizes = " or ".join(str(v) for v in (lower, upper) if v >= 1)
    divisors = [d for d in range(2, generation + 1) if generation % d == 0]
    near = sorted(divisors, key=lambda d: (abs(d - groups), d))[:2]
    fix_g = f", or --num_generations {' or '.join(map(str, sorted(near)))}" if near else ""
    return (f"each generation batch must hold whole groups of --num_generations {groups} completions, but "
            f"--per_device_train_batch_size {per_device} x --gradient_accumulation_steps {accumulation}"
            + (f" x {processes} processes" if processes > 1 else "") + f" = {generation} completions is not a "
            f"multiple of {groups}: use --per_device_train_batch_size {sizes}{fix_g}. (TRL: generation_batch_size "
            f"({generation}) must be divisible by num_generations ({groups}).)")


def underscored(arg: str) -> str:
    if not arg.startswith("--"):
        return arg
    name, eq, value = arg.partition("=")
    return "--" + name[2:].replace("-", "_") + eq + value


def merge_repeated(argv: list[str], option: str) -> list[str]:
    """`--reward a --reward b` -> `--reward a b`: argparse keeps only the last of a repeated nargs='+' option."""
    values, out, first, i = [], [], None, 0
    while i < len(argv):
        name, eq, value = argv[i].partition("=")
        if name != option:
            out.append(argv[i])
            i += 1
            continue
        if first is None:
            first = len(out)
        if eq:
            values.append(value)
            i += 1
            continue
        i += 1
        while i < len(argv) and not argv[i].startswith("--"):
            values.append(argv[i])
            i += 1
    if first is not None:
        out[first:first] = [option, *values]
    return out
