"""`trl-plus train pl_reward|listwise_dpo --dataset FILE.jsonl`: train on listwise (ranked) preferences.

`trl-plus train` hands these two algorithms to `run(algo, argv)` here. Options are parsed by TRL's `TrlParser` over
`ListwiseArguments` (below), the algorithm's config (`PlackettLuceRewardConfig` or `ListwiseDPOConfig`: every
`RewardConfig`/`DPOConfig` field plus `top_k`) and TRL's `ModelConfig` (PEFT/QLoRA: `--use_peft --lora_r 16
--load_in_4bit ...`). `--config FILE.yaml` sets any of them; command-line values win. The data schema is in
docs/listwise.md.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field

ALGOS = {
    "pl_reward": ("trl_plus.trainers.pl_reward", "PlackettLuceRewardConfig", "PlackettLuceRewardTrainer"),
    "listwise_dpo": ("trl_plus.trainers.listwise_dpo", "ListwiseDPOConfig", "ListwiseDPOTrainer"),
}


@dataclass
class ListwiseArguments:
    dataset: str | None = field(
        default=None,
        metadata={"help": "Listwise .jsonl file: one object per line with 'prompt', 'completions' (K >= 2) and "
                          "'ranking' (indices, best first) or 'scores' (higher is better). Required."},
    )
    model: str | None = field(
        default=None,
        metadata={"help": "Model directory or hub id (hub ids need internet). Default: the offline tiny model. "
                          "pl_reward loads it as a sequence classifier with a new 1-output head."},
    )
    num_samples: int | None = field(default=None, metadata={"help": "Use only the first N rows."})
    report_json: str | None = field(
        default=None, metadata={"help": "Write {algo, steps, loss_first, loss_last, seconds} here."}
    )


def handles(algo: str | None) -> bool:
    return algo is not None and algo.replace("-", "_") in ALGOS


def _classes(algo: str):
    import importlib

    module, config, trainer = ALGOS[algo]
    mod = importlib.import_module(module)
    return getattr(mod, config), getattr(mod, trainer)


def _parse(algo: str, argv: list[str]):
    from trl import ModelConfig, TrlParser

    from trl_plus.errors import UserError

    parser = TrlParser((ListwiseArguments, _classes(algo)[0], ModelConfig), prog=f"trl-plus train {algo}",
                       epilog="--config FILE.yaml sets any of these options; command-line values win.")

    def fail(message):
        raise UserError(f"{message}; run 'trl-plus train {algo} --help' for the valid options.")

    parser.error = fail
    argv = [_underscored(a) for a in argv]  # users type --top-k and --top_k
    try:
        script, config, model_args = parser.parse_args_and_config(args=argv)
    except (UserError, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - malformed YAML, impossible values (__post_init__ messages)
        raise UserError(f"{type(e).__name__}: {e}".replace("\n", " ")) from None
    if not script.dataset:
        raise UserError(f"--dataset FILE.jsonl is required: a listwise file (see 'trl-plus train {algo} --help').")
    return script, config, model_args


def _underscored(arg: str) -> str:
    if not arg.startswith("--"):
        return arg
    name, eq, value = arg.partition("=")
    return "--" + name[2:].replace("-", "_") + eq + value


def load_listwise_jsonl(path: str, n: int | None = None):
    """Read a listwise .jsonl file into a `datasets.Dataset`; JSON errors name the line."""
    from datasets import Dataset

    from trl_plus.errors import UserError

    if not os.path.isfile(path):
        raise UserError(f"dataset file {path} does not exist: pass a listwise .jsonl file.")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise UserError(f"{path}:{lineno} is not JSON: one object per line, with 'prompt', "
                                    "'completions' and 'ranking' or 'scores'.") from None
    rows = rows[:n] if n is not None else rows
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise UserError(f"{path} has no listwise rows: each line must be a JSON object with 'prompt', "
                        "'completions' and 'ranking' or 'scores'.")
    keys = {"ranking", "scores"} | {k for r in rows for k in r}
    try:  # every row gets every column (null where absent), so rankings and scores can mix
        return Dataset.from_list([{k: r.get(k) for k in keys} for r in rows])
    except Exception as e:  # noqa: BLE001 - pyarrow type clashes
        raise UserError(f"{path}: rows do not share one schema ({type(e).__name__}); don't mix plain-text and "
                        "conversational prompts or completions in one file.") from None


def run(algo: str, argv: list[str]) -> int:
    from trl_plus.errors import UserError
    from trl_plus.listwise_data import ListwiseDataError
    from trl_plus.qlora import model_kwargs_and_peft

    algo = algo.replace("-", "_")
    script, config, model_args = _parse(algo, argv)
    data = load_listwise_jsonl(script.dataset, script.num_samples)
    model = script.model
    if model is None:
        from trl_plus.demo import DemoSettings, tiny_model_path

        model = str(tiny_model_path(DemoSettings(seed=config.seed, model_size="tiny")))
    elif model.startswith((".", "/", "~")) and not os.path.isdir(os.path.expanduser(model)):
        raise UserError(f"model directory {model} does not exist: pass a saved model directory or a hub id.")
    if algo == "pl_reward" and model_args.lora_task_type == "CAUSAL_LM":
        model_args.lora_task_type = "SEQ_CLS"  # a reward model is a sequence classifier
        model_args.lora_modules_to_save = model_args.lora_modules_to_save or ["score"]  # train the new head
    try:
        init_kwargs, peft_config = model_kwargs_and_peft(model_args)
    except (ImportError, ValueError) as e:
        raise UserError(str(e)) from None
    config.model_init_kwargs = {**init_kwargs, **(config.model_init_kwargs or {})}
    _, trainer_cls = _classes(algo)
    start = time.perf_counter()
    try:
        trainer = trainer_cls(model=model, args=config, train_dataset=data, peft_config=peft_config)
    except ListwiseDataError as e:
        raise UserError(f"{script.dataset}: {e}") from None
    except OSError as e:
        raise UserError(f"could not load model {model!r} ({str(e).splitlines()[0]}).") from None
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model(config.output_dir)
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    report = {"algo": algo, "steps": trainer.state.global_step, "loss_first": losses[0] if losses else None,
              "loss_last": losses[-1] if losses else None, "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(report), file=sys.stderr)
    if script.report_json:
        with open(script.report_json, "w") as f:
            json.dump(report, f, indent=2)
    return 0
