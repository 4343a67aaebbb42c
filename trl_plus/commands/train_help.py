"""`trl-plus train [ALGO] --help`: trl-plus's options and the common ones first, in groups, fast.

Importing TRL and torch takes seconds to tens of seconds, so this help is built without them: the
trl-plus options come from `TrainArguments`, the common TRL options from the table below, and the
algorithm's own options from its config class's source (read with `ast`, not imported). Every other
field of TRL's `GRPOConfig` and `ModelConfig` is accepted too; `--help_all` lists them (with imports).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import textwrap

from trl_plus.algorithms import ALGORITHMS, get_algorithm

# (option, metavar, help): the TRL fields a first run needs, with their TRL defaults.
COMMON = [
    ("max_steps", "N", "optimizer steps (default: one epoch of the data)"),
    ("learning_rate", "LR", "AdamW learning rate (TRL default: 1e-6)"),
    ("per_device_train_batch_size", "N", ("completions per device per step; with --gradient_accumulation_steps "
                                          "and the number of processes, a multiple of --num_generations "
                                          "(TRL default: 8)")),
    ("gradient_accumulation_steps", "N", "steps accumulated per optimizer update (default: 1)"),
    ("num_generations", "G", "completions per prompt, at least 2 (TRL default: 8)"),
    ("max_completion_length", "N", "most tokens per completion (TRL default: 256)"),
    ("temperature", "T", "sampling temperature (default: 1.0)"),
    ("beta", "B", "KL coefficient against the reference model (TRL default: 0)"),
    ("output_dir", "DIR", "where checkpoints and the final model go (default: runs/ALGO-MODEL)"),
    ("save_steps", "N", "save a checkpoint-N folder every N steps"),
    ("logging_steps", "N", "log metrics every N steps"),
    ("resume_from_checkpoint", "DIR", "continue from a checkpoint-N folder of an earlier run"),
    ("seed", "N", "seed for data order, sampling and initialisation (default: 42)"),
    ("bf16", "BOOL", "bf16 mixed precision (default: on with a CUDA GPU, off on CPU)"),
    ("use_cpu", "BOOL", "train on the CPU even when a GPU is present"),
    ("report_to", "NAME", "logging integrations: none, tensorboard, wandb, ... (default: none)"),
]
QLORA = [
    ("use_peft", "", "train a LoRA adapter instead of all weights"),
    ("load_in_4bit", "", "load the base model in 4-bit NF4 (QLoRA; needs bitsandbytes and --use_peft)"),
    ("lora_r", "R", "LoRA rank (default: 16)"),
    ("lora_alpha", "A", "LoRA alpha (default: 32)"),
    ("lora_target_modules", "NAMES", "modules to adapt, e.g. all-linear or q_proj v_proj"),
    ("dtype", "DTYPE", "weights dtype when loading: float32, bfloat16, float16, auto"),
]
METAVARS = {"model": "DIR|HUB_ID", "dataset": "NAME|FILE", "reward": "SPEC", "report_json": "FILE"}
WIDTH = 100
INDENT = 34


def _option(name: str, metavar: str, text: str) -> str:
    head = f"  --{name}" + (f" {metavar}" if metavar else "")
    body = textwrap.wrap(text, WIDTH - INDENT) or [""]
    lines = [head.ljust(INDENT) + body[0] if len(head) < INDENT - 1 else head + "\n" + " " * INDENT + body[0]]
    return "\n".join(lines + [" " * INDENT + b for b in body[1:]])


def trl_plus_options() -> list[str]:
    from trl_plus.commands.train import TrainArguments

    out = []
    for f in dataclasses.fields(TrainArguments):
        text = f.metadata.get("help", "")
        if f.type in (bool, "bool"):
            out.append(_option(f.name, "", text + " (default)" if f.default else text))
            out.append(_option(f"no_{f.name}", "", f"the opposite of --{f.name}"))
        else:
            out.append(_option(f.name, METAVARS.get(f.name, "N"), text))
    out.append(_option("config", "FILE.yaml", "set any option from a YAML file (keys as the options, without the "
                       "dashes; command-line values win); see examples/recipes/"))
    return out


def own_fields(algo: str) -> list[tuple[str, str]]:
    """(name, help) of the fields the algorithm's config class adds, read from its source without importing it."""
    spec = get_algorithm(algo)
    if not spec.module.startswith("trl_plus."):
        return []
    found = importlib.util.find_spec(spec.module)
    with open(found.origin, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == spec.config), None)
    fields = []
    for node in cls.body if cls else []:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            text, default = "", ""
            if isinstance(node.value, ast.Call):
                for kw in node.value.keywords:
                    if kw.arg == "metadata" and isinstance(kw.value, ast.Dict):
                        meta = {ast.literal_eval(k): v for k, v in zip(kw.value.keys, kw.value.values)}
                        text = ast.literal_eval(meta["help"]) if "help" in meta else ""
                    if kw.arg == "default":
                        default = f" (default: {ast.unparse(kw.value)})"
            fields.append((node.target.id, text.strip() + default))
    common = {name for name, _, _ in COMMON + QLORA}
    return [(n, t) for n, t in fields if n not in common]


def help_text(algo: str | None = None) -> str:
    names = ", ".join(ALGORITHMS)
    if algo:
        spec = get_algorithm(algo)
        head = [f"usage: trl-plus train {spec.name} [options]", "", f"{spec.name}: {spec.summary}"]
    else:
        head = ["usage: trl-plus train ALGO [options]", "",
                f"Train with ALGO, one of: {names}.",
                "Example: trl-plus train grpo --dataset synthetic --max_steps 10 --reward gsm8k_correctness"]
    parts = [*head, "", "trl-plus options:", *trl_plus_options(),
             "", "common training options (TRL's GRPOConfig):", *[_option(*o) for o in COMMON],
             "", "LoRA and QLoRA (TRL's ModelConfig):", *[_option(*o) for o in QLORA]]
    if algo:
        own = own_fields(algo)
        if own:
            parts += ["", f"{spec.name} options ({spec.config}):", *[_option(n, "VALUE", t) for n, t in own]]
    more = f"trl-plus train {algo} --help_all" if algo else "trl-plus train ALGO --help_all"
    parts += ["", f"Every other field of TRL's GRPOConfig and ModelConfig is accepted as well; '{more}' lists them all.",
              "Options are snake_case as in TRL; the kebab spelling (--max-steps) works too, also as YAML keys."]
    return "\n".join(parts) + "\n"
