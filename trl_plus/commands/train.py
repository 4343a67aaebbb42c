"""`trl-plus train ALGO`: train any algorithm on GSM8K-schema data with registry rewards.

Options after ALGO are parsed by TRL's `TrlParser` over three dataclasses: `TrainArguments`
(below), the algorithm's config (every `GRPOConfig` field plus the algorithm's own) and TRL's
`ModelConfig` (QLoRA: `--load_in_4bit --use_peft --lora_r 16 ...`). `--config FILE.yaml` sets any
of them; command-line values win. How options are read is in `train_options.py`; the fast, grouped
`--help` in `train_help.py`. A run ends by printing its rewards, the saved folder and the eval command.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from trl_plus.algorithms import ALGORITHMS
from trl_plus.cli import suggest
from trl_plus.commands.train_options import (
    NO_MAX_PROMPT_LENGTH,
    apply_yaml,
    default_output_dir,
    explain_config_error,
    merge_repeated,
    pop_config,
    underscored,
)
from trl_plus.errors import UserError


@dataclass
class TrainArguments:
    model: str | None = field(
        default=None,
        metadata={"help": "Model directory or hub id (hub ids need internet). Default: the offline tiny model."},
    )
    dataset: str = field(
        default="synthetic",
        metadata={"help": "'synthetic' (generated GSM8K-style problems, offline), 'chain' (generated 2-4 step problems, "
                          "offline), 'gsm8k' (openai/gsm8k, needs "
                          "internet) or a local GSM8K-schema file: .jsonl (one {\"question\", \"answer\"} object "
                          "per line, the answer ending in '#### N') or .json."},
    )
    difficulty: int = field(default=1, metadata={"help": "Difficulty of synthetic problems (1 = 2-digit addition)."})
    num_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    reward: list[str] = field(
        default_factory=list,
        metadata={"help": "A reward, repeatable (--reward A --reward B=2): NAME[=WEIGHT][:PARAM=VALUE...] with NAME "
                          "a registered reward, MODULE:FUNCTION, MODULE.FUNCTION or FILE.py:FUNCTION; PARAM=VALUE "
                          "pairs build it from its factory (length_penalty=0.5:max_length=200). Default: the "
                          "'gsm8k' preset (format + correctness)."},
    )
    conversational: bool = field(
        default=True, metadata={"help": "Chat-format prompts with the answer-format system prompt."}
    )
    report_json: str | None = field(
        default=None,
        metadata={"help": "Write {algo, steps, reward_first, reward_last, seconds} here. reward_first/last are the "
                          "mean logged reward over the first/last quarter of logged steps."},
    )


def add_parser(sub):
    p = sub.add_parser(
        "train",
        help="train with an algorithm: " + ", ".join(ALGORITHMS),
        description=f"Train with ALGO (one of: {', '.join(ALGORITHMS)}).",
        add_help=False,  # `train [ALGO] --help` is ours: grouped and fast (see train_help.py)
    )
    p.set_defaults(run=run, takes_extra=True)
    return p


def _split_algo(tokens: list[str]) -> tuple[str | None, list[str]]:
    """ALGO from the first word or from `--algo X` anywhere (the README's tables call it --algo)."""
    algo, rest, i = None, [], 0
    while i < len(tokens):
        name, eq, value = tokens[i].partition("=")
        if name == "--algo":
            if not eq and i + 1 >= len(tokens):
                raise UserError(f"--algo needs a value, one of: {', '.join(ALGORITHMS)}.")
            value = value if eq else tokens[i + 1]
            if algo is not None and algo != value:
                raise UserError(f"two algorithms given ({algo} and {value}): pass one, as in 'trl-plus train {value}'.")
            algo, i = value, i + (1 if eq else 2)
            continue
        if i == 0 and not tokens[0].startswith("-"):
            algo = tokens[0]
        else:
            rest.append(tokens[i])
        i += 1
    return algo, rest


def run(args) -> int:
    from trl_plus.commands.train_help import help_text

    algo, rest = _split_algo(args.extra)
    from trl_plus.commands import listwise  # listwise preferences: their own data and options

    if algo is not None and listwise.handles(algo):
        return listwise.run(algo, rest)
    if algo is not None:
        algo = _algorithm(algo)
    wants_help = any(a in ("-h", "--help") for a in rest)
    if "--help_all" in rest or "--help-all" in rest:
        if algo is None:
            raise UserError(f"--help_all lists one algorithm's options: 'trl-plus train ALGO --help_all' with ALGO "
                            f"one of {', '.join(ALGORITHMS)}.")
        _full_parser(algo).print_help()
        raise SystemExit(0)
    if wants_help or not args.extra:
        print(help_text(algo), end="")
        if wants_help:
            raise SystemExit(0)
        return 0  # `trl-plus train` alone: the help is the answer
    if algo is None:
        raise UserError(f"no algorithm given: name it first, as in 'trl-plus train grpo {' '.join(rest[:2])}' "
                        f"(one of: {', '.join(ALGORITHMS)}).")
    script, config, model_args = _parse(algo, rest)
    _check_paths(script, config)
    start = time.perf_counter()
    trainer = build(algo, script, config, model_args)
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model(config.output_dir)
    report = summarise(algo, trainer, time.perf_counter() - start)
    if script.report_json:
        with open(script.report_json, "w") as f:
            json.dump(report, f, indent=2)
    if trainer.accelerator.is_main_process:
        print(final_lines(report, trainer, config.output_dir, script))
    return 0


def _algorithm(name: str) -> str:
    from trl_plus.algorithms import get_algorithm

    try:
        return get_algorithm(name).name
    except ValueError as e:
        raise UserError(str(e)) from None


def _full_parser(algo: str):
    from trl import ModelConfig, TrlParser

    from trl_plus.algorithms import get_algorithm

    config_cls, _ = get_algorithm(algo).classes()
    parser = TrlParser(
        (TrainArguments, config_cls, ModelConfig), prog=f"trl-plus train {algo}",
        epilog="--config FILE.yaml sets any of these options from a YAML file; command-line values win.",
    )
    for action in parser._actions:  # HfArgumentParser gives --no_X the help text of --X
        if "--no_conversational" in action.option_strings:
            action.help = "Plain-text prompts: the system prompt and the question as one string, no chat template."
    return parser


def _parse(algo_name: str, argv: list[str]):
    quiet_known_noise()
    algo_name = _algorithm(algo_name)
    parser = _full_parser(algo_name)
    # One flag convention: snake_case as in TRL, kebab accepted; `--reward a --reward b` accumulates.
    argv = merge_repeated([underscored(a) for a in argv], "--reward")
    argv, config_file = pop_config(argv)
    valid = {o for o in parser._option_string_actions if o.startswith("--")}
    for arg in argv:
        name = arg.split("=")[0]
        if name == "--max_prompt_length":
            raise UserError(NO_MAX_PROMPT_LENGTH)
        if arg.startswith("--") and name not in valid:
            raise UserError(f"unknown option {name}{suggest(name, valid)}; run 'trl-plus train {algo_name} --help' "
                            "for the common options, or --help_all for all of them.")
    yaml_keys = set(apply_yaml(parser, config_file, valid, algo_name)) if config_file else set()
    cli_keys = {a.split("=")[0][2:] for a in argv if a.startswith("--")}
    import torch

    if not torch.cuda.is_available():
        # TRL defaults to bf16, which CPU-only training rejects (recipes ask for it for their GPU), and to pinned
        # memory, which warns on CPU. Only the command line overrides this.
        for option in ("bf16", "dataloader_pin_memory"):
            if option not in cli_keys and not (option == "bf16" and "fp16" in cli_keys):
                argv = [f"--{option}", "False", *argv]

    def fail(message):  # argparse's own message (bad value, missing value) as one line, without the usage dump
        raise UserError(f"{message}; run 'trl-plus train {algo_name} --help' for the valid options.")

    parser.error = fail
    try:
        parsed = parser.parse_args_into_dataclasses(args=argv)
    except UserError:
        raise
    except SystemExit as e:
        if e.code not in (0, None):
            raise UserError(f"bad options for '{algo_name}'; run 'trl-plus train {algo_name} --help'.") from None
        raise
    except Exception as e:  # noqa: BLE001 - impossible config values (__post_init__ messages)
        raise UserError(explain_config_error(e, algo_name, argv, parser)) from None
    from trl_plus.engine.training_checks import check_config

    try:
        check_config(parsed[1])
    except ValueError as e:
        raise UserError(str(e)) from None
    script, config, _ = parsed
    # A recipe's output_dir names the recipe's model: with another --model, name the run after that one.
    if "output_dir" not in cli_keys and ("output_dir" not in yaml_keys or "model" in cli_keys):
        config.output_dir = default_output_dir(algo_name, script.model)
    return parsed


def _rewards(specs: list):
    import reward_fns
    if not specs:
        funcs, weights = reward_fns.preset("gsm8k")
    else:
        try:
            funcs, weights = map(list, zip(*(reward_fns.from_spec(spec) for spec in specs)))
        except ValueError as e:
            raise UserError(str(e)) from None
    # A reward that never varies trains nothing; say so instead of training on it silently.
    return [reward_fns.watch_constant(f) for f in funcs], weights


def _check_paths(script, config):
    model = script.model
    # "org/name" is a hub id; only something that looks like a filesystem path must exist here.
    if model and model.startswith((".", "/", "~")) and not os.path.isdir(os.path.expanduser(model)):
        raise UserError(f"model directory {model} does not exist: pass a saved model directory "
                            "(e.g. made by 'trl-plus tiny-model DIR') or a hub id such as Qwen/Qwen2.5-0.5B-Instruct.")
    path = os.path.expanduser(model or "")
    if model and os.path.isdir(path) and not any(os.path.isfile(os.path.join(path, f))
                                                 for f in ("config.json", "adapter_config.json")):
        raise UserError(f"{model} is not a model directory (no config.json): pass a directory written by "
                        "save_pretrained (e.g. made by 'trl-plus tiny-model DIR', or a checkpoint-N of a run).")
    ckpt = config.resume_from_checkpoint
    if ckpt and ckpt not in ("True", "true") and not os.path.isdir(ckpt):
        raise UserError(f"--resume_from_checkpoint {ckpt} does not exist: pass a checkpoint-N directory from "
                        "an earlier run's --output_dir.")


def build(algo: str, script: TrainArguments, config, model_args):
    """Everything `train` does before `trainer.train()`: model, data, rewards, QLoRA."""
    from trl_plus.algorithms import build_trainer, get_algorithm
    from trl_plus.data import SYSTEM_PROMPT, load_rows, to_prompt_dataset
    from trl_plus.qlora import model_kwargs_and_peft

    for key, value in get_algorithm(algo).defaults.items():
        setattr(config, key, value)
    funcs, weights = _rewards(script.reward)  # before any model is loaded: a misspelt name fails at once
    model = script.model
    if model is None:
        from trl_plus.tiny import cached_tiny_model

        model = str(cached_tiny_model(seed=config.seed))
    model_args.model_name_or_path = model
    try:
        init_kwargs, peft_config = model_kwargs_and_peft(model_args)
    except (ImportError, ValueError) as e:  # e.g. 4-bit without bitsandbytes or without --use_peft
        raise UserError(str(e)) from None
    config.model_init_kwargs = {**init_kwargs, **(config.model_init_kwargs or {})}  # the user's values win
    rows = load_rows(script.dataset, split="train", n=script.num_samples, seed=config.seed,
                     difficulty=script.difficulty)
    dataset = to_prompt_dataset(rows, SYSTEM_PROMPT, conversational=script.conversational)
    if config.reward_weights is None:
        config.reward_weights = weights
    from trl_plus.engine.training_checks import check_trainer

    try:
        trainer = build_trainer(algo, model=model, reward_funcs=funcs, args=config, train_dataset=dataset,
                                peft_config=peft_config)
        check_trainer(trainer)  # trl-plus trainers ran it already; TRL's own GRPOTrainer did not
        readable_progress(trainer)
    except OSError as e:  # missing local files or no network for a hub id
        raise UserError(f"could not load model {model!r} ({str(e).splitlines()[0]}). Offline, pass a local model "
                        "directory; hub ids need internet.") from None
    except ValueError as e:  # input checks of the trainers (data, tokenizer, rewards vs algorithm)
        raise UserError(str(e).replace("\n", " ")) from None
    return trainer


def summarise(algo: str, trainer, seconds: float) -> dict:
    rewards = [row["reward"] for row in trainer.state.log_history if "reward" in row]
    quarter = max(1, len(rewards) // 4)
    mean = lambda xs: sum(xs) / len(xs) if xs else None
    return {
        "algo": algo,
        "steps": trainer.state.global_step,
        "reward_first": mean(rewards[:quarter]),
        "reward_last": mean(rewards[-quarter:]),
        "seconds": round(seconds, 1),
    }


def final_lines(report: dict, trainer, output_dir: str, script: TrainArguments) -> str:
    """What a run ends with: the result in a few readable lines, where the model is, how to evaluate it."""
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"
    lines = [f"trained {report['algo']} for {report['steps']} steps in {report['seconds']} s"]
    if report["reward_first"] is not None:
        lines.append(f"  mean reward  {fmt(report['reward_first'])} -> {fmt(report['reward_last'])}  "
                     "(first -> last quarter of the logged steps)")
    last = next((row for row in reversed(trainer.state.log_history) if "reward" in row), {})
    for key in sorted(k for k in last if k.startswith("rewards/") and k.endswith("/mean")):
        lines.append(f"  {key[len('rewards/'):-len('/mean')]:<24} {fmt(last[key])}  (last logged step)")
    data = "" if script.dataset in ("gsm8k", "openai/gsm8k") else " --data_dir DIR_WITH_TRAIN_AND_TEST_JSONL"
    lines += [f"saved the model to {output_dir}",
              f"evaluate it: trl-plus eval {output_dir} --tasks gsm8k,gsm8k_reasoning --limit 100{data}"]
    return "\n".join(lines)


# Logged keys worth a line per logging step; the rest stays in trainer.state.log_history and report_to.
SHOWN = ("loss", "reward", "reward_std", "kl", "entropy", "grad_norm", "learning_rate", "completions/mean_length")


def readable_progress(trainer) -> None:
    """Per-step logs as one short line each (`step 3 | loss 0.01 | reward 0.42 | ...`), instead of the whole dict;
    the final `train_runtime` dict is left out, as the run ends with its own summary."""
    from transformers.trainer_callback import ProgressCallback

    class ReadableProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not (state.is_world_process_zero and self.training_bar is not None) or "train_runtime" in (logs or {}):
                return
            keys = [k for k in logs if k in SHOWN or (k.startswith("rewards/") and k.endswith("/mean"))
                    or k.split("/")[0] in (*ALGORITHMS, "process")]
            values = [f"{k} {logs[k]:.4g}" if isinstance(logs[k], float) else f"{k} {logs[k]}" for k in keys]
            self.training_bar.write(" | ".join([f"step {state.global_step}", *values]))

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(ReadableProgress)


def quiet_known_noise() -> None:
    """Silence warnings a user cannot act on, caused by TRL 1.16 on transformers 5 (not by their settings)."""
    import warnings

    # TRL still reads and sets `gradient_checkpointing*`, which transformers 5 renamed `activation_checkpointing*`.
    warnings.filterwarnings("ignore", message=r"`(is_)?gradient_checkpointing\w*` is deprecated", category=FutureWarning)
