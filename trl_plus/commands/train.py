"""`trl-plus train ALGO`: train any algorithm on GSM8K-schema data with registry rewards.

Options after ALGO are parsed by TRL's `TrlParser` over three dataclasses: `TrainArguments`
(below), the algorithm's config (every `GRPOConfig` field plus the algorithm's own) and TRL's
`ModelConfig` (QLoRA: `--load_in_4bit --use_peft --lora_r 16 ...`). `--config FILE.yaml` sets any
of them; command-line values win. Dashes and underscores are both accepted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field

from trl_plus.algorithms import ALGORITHMS


@dataclass
class TrainArguments:
    model: str | None = field(
        default=None,
        metadata={"help": "Model directory or hub id (hub ids need internet). Default: the offline tiny model."},
    )
    dataset: str = field(
        default="synthetic",
        metadata={"help": "'synthetic' (generated GSM8K-style problems), 'gsm8k' (openai/gsm8k, needs internet) "
                          "or a local GSM8K-schema .jsonl path."},
    )
    difficulty: int = field(default=1, metadata={"help": "Difficulty of synthetic problems (1 = 2-digit addition)."})
    num_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    reward: list[str] = field(
        default_factory=list,
        metadata={"help": "Reward function from the reward_fns registry, as NAME or NAME=WEIGHT; repeatable. "
                          "Default: the 'gsm8k' preset (format + correctness)."},
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
        description=f"Train with ALGO (one of: {', '.join(ALGORITHMS)}). Run 'trl-plus train ALGO --help' for "
        "every option of that algorithm: --model, --dataset, --reward NAME[=W], --max_steps, --output_dir, "
        "--save_steps, --resume_from_checkpoint, --config FILE.yaml, --report_json, QLoRA (--load_in_4bit "
        "--use_peft --lora_r ...), and all fields of the algorithm's config.",
        add_help=False,
    )
    p.add_argument("-h", "--help", action="store_true", help="show this help; 'train ALGO --help' shows all options")
    p.add_argument("algo", nargs="?", help="algorithm name")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options, parsed by TRL's TrlParser")
    p.set_defaults(run=run, _parser=p)
    return p


def _parse(algo_name: str, argv: list[str]):
    from trl import ModelConfig, TrlParser

    from trl_plus.algorithms import get_algorithm
    from trl_plus.cli import UserError

    config_cls, _ = get_algorithm(algo_name).classes()
    parser = TrlParser(
        (TrainArguments, config_cls, ModelConfig), prog=f"trl-plus train {algo_name}",
        epilog="--config FILE.yaml sets any of these options from a YAML file; command-line values win.",
    )
    # Users type both styles; HfArgumentParser only knows the underscore form of some fields.
    argv = [_underscored(a) for a in argv]
    import torch

    if not torch.cuda.is_available() and not any(a.split("=")[0] in ("--bf16", "--fp16") for a in argv):
        argv = ["--bf16", "False", *argv]  # TRL defaults to bf16, which CPU-only training rejects

    def fail(message):  # argparse's own message (bad value, missing value) as one line, without the usage dump
        raise UserError(f"{message}; run 'trl-plus train {algo_name} --help' for the valid options.")

    parser.error = fail
    try:
        parsed = parser.parse_args_and_config(args=argv)
    except UserError:
        raise
    except SystemExit as e:
        if e.code not in (0, None):
            raise UserError(f"bad options for '{algo_name}'; run 'trl-plus train {algo_name} --help'.") from None
        raise
    except Exception as e:  # noqa: BLE001 - malformed YAML, impossible config values (__post_init__ messages)
        message = f"{type(e).__name__}: {e}".replace("\n", " ")
        if type(e).__module__.startswith("yaml"):
            message = (f"the --config file is not valid YAML ({message}); fix the syntax: one 'option: value' per "
                       "line, as in the examples/ recipes.")
        if "not used by the HfArgumentParser" in message or "Unknown arguments from config file" in message:
            message += f" Run 'trl-plus train {algo_name} --help' for the valid options."
        if "max_prompt_length" in message:
            message += (" TRL 1.16 has no max_prompt_length and never truncates prompts: shorten or filter long "
                        "prompts in the data (trl-plus warns when a prompt plus max_completion_length exceeds the "
                        "model's context).")
        raise UserError(message) from None
    from trl_plus.checks import check_config

    try:
        check_config(parsed[1])
    except ValueError as e:
        raise UserError(str(e)) from None
    return parsed


def _underscored(arg: str) -> str:
    if not arg.startswith("--"):
        return arg
    name, eq, value = arg.partition("=")
    return "--" + name[2:].replace("-", "_") + eq + value


def _rewards(specs: list[str]):
    import reward_fns
    from trl_plus.cli import UserError

    if not specs:
        return reward_fns.preset("gsm8k")
    funcs, weights = [], []
    for spec in specs:
        name, _, weight = spec.partition("=")
        try:
            funcs.append(reward_fns.get(name))
            weights.append(float(weight) if weight else 1.0)
        except KeyError as e:
            raise UserError(str(e.args[0])) from None
        except ValueError:
            raise UserError(f"--reward {spec!r}: the weight must be a number, as in --reward {name}=0.5.") from None
    return funcs, weights


def _check_paths(script, config):
    from trl_plus.cli import UserError

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


def run(args) -> int:
    from trl_plus.cli import UserError
    from trl_plus.commands import listwise  # listwise preferences (issue 16): own data and options

    if listwise.handles(args.algo):
        return listwise.run(args.algo, args.rest)
    if args.help or args.algo is None:
        args._parser.print_help()
        args._parser.exit(0 if args.help else 2)
    if args.algo.replace("-", "_") not in ALGORITHMS:
        from trl_plus.algorithms import get_algorithm

        try:
            get_algorithm(args.algo)
        except ValueError as e:
            raise UserError(str(e)) from None
    script, config, model_args = _parse(args.algo, args.rest)
    _check_paths(script, config)
    start = time.perf_counter()
    trainer = build(args.algo, script, config, model_args)
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model(config.output_dir)
    report = summarise(args.algo, trainer, time.perf_counter() - start)
    print(json.dumps(report), file=sys.stderr)
    if script.report_json:
        with open(script.report_json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


def build(algo: str, script: TrainArguments, config, model_args):
    """Everything `train` does before `trainer.train()`: model, data, rewards, QLoRA."""
    from trl_plus.algorithms import build_trainer, get_algorithm
    from trl_plus.cli import UserError
    from trl_plus.data import SYSTEM_PROMPT, load_rows, to_prompt_dataset
    from trl_plus.qlora import model_kwargs_and_peft

    for key, value in get_algorithm(algo).defaults.items():
        setattr(config, key, value)
    model = script.model
    if model is None:
        from trl_plus.demo import DemoSettings, tiny_model_path

        model = str(tiny_model_path(DemoSettings(seed=config.seed)))
    model_args.model_name_or_path = model
    try:
        init_kwargs, peft_config = model_kwargs_and_peft(model_args)
    except (ImportError, ValueError) as e:  # e.g. 4-bit without bitsandbytes or without --use_peft
        raise UserError(str(e)) from None
    config.model_init_kwargs = {**init_kwargs, **(config.model_init_kwargs or {})}  # the user's values win
    rows = load_rows(script.dataset, split="train", n=script.num_samples, seed=config.seed,
                     difficulty=script.difficulty)
    dataset = to_prompt_dataset(rows, SYSTEM_PROMPT, conversational=script.conversational)
    funcs, weights = _rewards(script.reward)
    if config.reward_weights is None:
        config.reward_weights = weights
    from trl_plus.checks import check_trainer

    try:
        trainer = build_trainer(algo, model=model, reward_funcs=funcs, args=config, train_dataset=dataset,
                                peft_config=peft_config)
        check_trainer(trainer)  # trl-plus trainers ran it already; TRL's own GRPOTrainer did not
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
