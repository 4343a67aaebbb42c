"""`evaluate`: lm-eval-harness's `simple_evaluate` on a live model or a checkpoint directory.

Tasks are looked up in lm-eval's registry plus this package's `eval/tasks/` (`gsm8k_reasoning`).
With `data_dir`, GSM8K tasks read local `train.jsonl`/`test.jsonl`: the task's own config is loaded
and only its dataset location is replaced, so prompts, targets, filters and metrics stay lm-eval's.
Heavy libraries are imported inside functions so `import eval` stays cheap.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from eval.tasks import TASKS_DIR

logger = logging.getLogger(__name__)

GSM8K_DATASETS = ("openai/gsm8k", "gsm8k")
# Without a chat template, our task renders like trl_plus.data.make_prompt(conversational=False):
# "<system prompt>\n\n<question>\n". (lm-eval joins a plain-text system prompt with no separator.)
_PLAIN_TEXT_OVERRIDES = {"gsm8k_reasoning": {"description": "{{system_prompt}}\n\n", "doc_to_text": "{{question}}\n"}}
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class EvalInputError(ValueError):
    """Bad input to `evaluate` (unknown task, unusable path or data); the message says how to fix it."""


def evaluate(model_or_path, tasks, limit: float | None = None, data_dir: str | Path | None = None, *,
             tokenizer=None, batch_size: int | str = 8, num_fewshot: int | None = None,
             apply_chat_template: bool | None = None, system_instruction: str | None = None,
             load_in_4bit: bool = False, gen_kwargs: dict | str | None = None, max_gen_toks: int | None = None,
             log_samples: bool = False, device: str | None = None, dtype: str = "auto",
             **simple_evaluate_kwargs) -> dict:
    """Evaluate a model with lm-eval and return its results plus a flat `metrics` view.

    Args:
        model_or_path: a live `PreTrainedModel` (or PEFT model), or a directory holding a full checkpoint
            (`config.json`) or a PEFT adapter (`adapter_config.json`, base from its `base_model_name_or_path`),
            or a Hugging Face Hub id.
        tasks: task names, a list or a comma-separated string: lm-eval's (`gsm8k`) or ours (`gsm8k_reasoning`).
        limit: examples per task (a fraction if < 1); None for all.
        data_dir: a directory with GSM8K-schema `train.jsonl` and `test.jsonl`, used instead of the hub.
        tokenizer: required with a live model; loaded from the checkpoint otherwise.
        apply_chat_template: None means on when the tokenizer has a chat template.
        load_in_4bit: load a path in 4-bit NF4 with bitsandbytes.
        gen_kwargs / max_gen_toks: generation overrides applied to every generative task.
        **simple_evaluate_kwargs: passed on to `lm_eval.simple_evaluate` (e.g. `bootstrap_iters`).

    Returns:
        lm-eval's results dict (`results`, `configs`, `n-samples`, ...) plus `metrics`:
        `{task: {"exact_match,strict-match": x, "exact_match_stderr,strict-match": s, ...}}` and
        `apply_chat_template` (the setting used).
    """
    names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t and t.strip()]
    if not names:
        raise EvalInputError("No tasks given: pass task names such as 'gsm8k,gsm8k_reasoning'.")
    data_files = _data_files(data_dir) if data_dir is not None else None
    if load_in_4bit:
        _require_bitsandbytes()
    is_path = isinstance(model_or_path, (str, Path))
    if is_path:
        _check_checkpoint(model_or_path)
    elif tokenizer is None:
        raise EvalInputError("A live model needs its tokenizer: pass tokenizer=... to evaluate().")
    task_manager = _task_manager(names)
    if is_path:  # the tokenizer first: data problems surface before a large model is loaded
        tokenizer = load_tokenizer(model_or_path)
    if apply_chat_template is None:
        apply_chat_template = bool(getattr(tokenizer, "chat_template", None))
    task_objects = _load_tasks(names, task_manager, data_files, chat=bool(apply_chat_template))
    model = (load_model(model_or_path, load_in_4bit=load_in_4bit, device=device, dtype=dtype)[0]
             if is_path else model_or_path)

    if max_gen_toks is not None:
        gen_kwargs = {**_parse_gen_kwargs(gen_kwargs), "max_gen_toks": int(max_gen_toks)}

    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    was_training = model.training
    try:
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        simple_evaluate_kwargs.setdefault("fewshot_as_multiturn", bool(apply_chat_template))
        out = simple_evaluate(
            model=lm, tasks=task_objects, num_fewshot=num_fewshot, limit=limit, task_manager=task_manager,
            apply_chat_template=bool(apply_chat_template), system_instruction=system_instruction,
            gen_kwargs=gen_kwargs, log_samples=log_samples, **simple_evaluate_kwargs,
        )
    finally:
        model.train(was_training)
    out = dict(out or {})
    out["metrics"] = flat_metrics(out)
    out["apply_chat_template"] = bool(apply_chat_template)
    return out


def flat_metrics(results: dict) -> dict[str, dict[str, Any]]:
    """`{task: {"<metric>,<filter>": value, "<metric>_stderr,<filter>": stderr}}` from lm-eval's results."""
    return {task: {k: v for k, v in res.items() if "," in k}
            for task, res in (results.get("results") or {}).items()}


# ----------------------------------------------------------------------------------- input checks
def _data_files(data_dir) -> dict[str, str]:
    d = Path(data_dir).expanduser()
    if not d.is_dir():
        raise FileNotFoundError(f"data_dir {d} is not a directory: pass a directory holding GSM8K-schema "
                                "train.jsonl and test.jsonl (GSM8K from github.com/openai/grade-school-math).")
    missing = [f"{s}.jsonl" for s in ("train", "test") if not (d / f"{s}.jsonl").is_file()]
    if missing:
        raise FileNotFoundError(f"data_dir {d} has no {' or '.join(missing)}: it needs GSM8K-schema train.jsonl "
                                "and test.jsonl (fields 'question', 'answer'), as in "
                                "github.com/openai/grade-school-math.")
    return {s: str((d / f"{s}.jsonl").resolve()) for s in ("train", "test")}


def _require_bitsandbytes() -> None:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise EvalInputError("load_in_4bit needs bitsandbytes, which is not importable: "
                             "`pip install bitsandbytes`, or evaluate without 4-bit loading.") from None


def _check_checkpoint(path) -> None:
    p = Path(path).expanduser()
    if p.exists():
        if not p.is_dir() or not ((p / "config.json").is_file() or (p / "adapter_config.json").is_file()):
            raise EvalInputError(f"{p} is not a model directory (no config.json or adapter_config.json): pass the "
                                 "directory that save_pretrained/trainer.save_model wrote, e.g. OUTPUT_DIR/checkpoint-N.")
    elif not _HUB_ID.match(str(path)) or str(path).startswith((".", "~")):
        raise FileNotFoundError(f"Checkpoint {p} does not exist: pass a directory with config.json (full model) "
                                "or adapter_config.json (PEFT adapter).")


# ----------------------------------------------------------------------------------- model loading
def _resolve(path) -> tuple[str, str, Path]:
    """`(path, base, adapter_config)`: base differs from path for a PEFT adapter directory."""
    path = str(Path(path).expanduser()) if Path(path).expanduser().exists() else str(path)
    adapter_cfg = Path(path) / "adapter_config.json"
    base = path
    if adapter_cfg.is_file():
        base = json.loads(adapter_cfg.read_text()).get("base_model_name_or_path")
        if not base:
            raise EvalInputError(f"{adapter_cfg} has no base_model_name_or_path: set it to the base model's "
                                 "directory or hub id.")
    return path, base, adapter_cfg


def load_tokenizer(path):
    """The tokenizer saved with a checkpoint or adapter, else the adapter's base model's."""
    from transformers import AutoTokenizer

    path, base, _ = _resolve(path)
    for source in dict.fromkeys([path, base]):
        try:
            return AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError):
            continue
    where = repr(path) if base == path else f"{path!r} or its base model {base!r}"
    raise FileNotFoundError(f"Could not load a tokenizer from {where}: pass a local model directory saved with its "
                            "tokenizer (tokenizer.save_pretrained(DIR)), or a hub id with network access "
                            "(HF_HUB_OFFLINE=0).")


def load_model(path, load_in_4bit: bool = False, device: str | None = None, dtype: str = "auto"):
    """Load `(model, tokenizer)` from a full checkpoint, a PEFT adapter directory or a hub id."""
    import torch
    from transformers import AutoModelForCausalLM

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    path, base, adapter_cfg = _resolve(path)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if load_in_4bit:
        kwargs["quantization_config"] = quantization_config(device)
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
    except OSError as e:
        what = f"the adapter's base model {base!r} (from {adapter_cfg})" if base != path else repr(path)
        raise FileNotFoundError(f"Could not load {what}, which is not a local model directory ({str(e).splitlines()[0]}): "
                                "pass an existing checkpoint directory, or a hub id with network access "
                                "(HF_HUB_OFFLINE=0).") from None
    if base != path:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, path)
        if not load_in_4bit:
            model = model.merge_and_unload()  # plain weights: faster generation, same outputs
    if not load_in_4bit:
        model = model.to(device)
    model.eval()
    return model, load_tokenizer(path)


def quantization_config(device: str):
    """4-bit NF4 with nested quantization, built by TRL's `get_quantization_config` (as `trl-plus train
    --load-in-4bit` builds it); computing in bfloat16 on a GPU and float32 on the CPU."""
    _require_bitsandbytes()
    from trl import ModelConfig, get_quantization_config

    compute = "float32" if device == "cpu" else "bfloat16"
    return get_quantization_config(ModelConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                               use_bnb_nested_quant=True, dtype=compute))


# ----------------------------------------------------------------------------------- tasks
def _task_manager(names: list[str]):
    """A TaskManager that knows `names`: a quick one over our tasks and the matching lm-eval folders when that
    is enough, else lm-eval's full registry plus our tasks (indexing every lm-eval task takes 15-40 s)."""
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._index import Kind

    lm_eval_tasks = Path(lm_eval.tasks.__file__).parent
    dirs = [TASKS_DIR] + sorted({lm_eval_tasks / n.split("_")[0] for n in names
                                 if (lm_eval_tasks / n.split("_")[0]).is_dir()})
    quick = TaskManager(include_path=[str(d) for d in dirs], include_defaults=False)
    if all(Path(n).is_file() or (n in quick.task_index and quick.task_index[n].kind in (Kind.TASK, Kind.PY_TASK))
           for n in names):
        return quick
    known = _declared_names()  # a cheap text scan, so an unknown name fails fast
    for n in names:
        if n not in known and n not in quick.task_index and not Path(n).is_file():
            import difflib

            close = difflib.get_close_matches(n, sorted(known), n=5, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}?" if close else "no close match."
            raise EvalInputError(f"Unknown task {n!r}: {hint} Use a name from `lm-eval ls tasks` or 'gsm8k_reasoning'.")
    full = _full_task_manager()
    for n in names:
        if n not in full.task_index and not Path(n).is_file():
            raise EvalInputError(f"Unknown task {n!r}: use a name from `lm-eval ls tasks` or 'gsm8k_reasoning'.")
    return full


_DECLARATION = re.compile(r"""^["']?(?:task|group|tag)["']?:[ \t]*(.*)$""")


@functools.lru_cache(maxsize=1)
def _declared_names() -> frozenset[str]:
    """Every name that a `task:`, `group:` or `tag:` line of a task YAML declares (a superset of the registry's
    task, group and tag names), read as text: a fraction of a second instead of a full TaskManager index."""
    import lm_eval.tasks

    names: set[str] = set()
    for root in (Path(lm_eval.tasks.__file__).parent, TASKS_DIR):
        for path in root.rglob("*"):
            if path.suffix not in ("", ".yaml", ".yml") or not path.is_file():  # templates often have no suffix
                continue
            try:
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            for i, line in enumerate(lines):
                m = _DECLARATION.match(line)
                if not m:
                    continue
                value = m.group(1).split(" #")[0].strip()
                if value:  # `tag: x` or `tag: [x, y]`
                    names.update(v.strip().strip("'\"") for v in value.strip("[]").split(","))
                else:  # a block list on the following lines
                    for item in lines[i + 1:]:
                        if not item.lstrip().startswith("- "):
                            break
                        names.add(item.lstrip()[2:].split(" #")[0].strip().strip("'\""))
    names.discard("")
    return frozenset(names)


@functools.lru_cache(maxsize=1)
def _full_task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR))


def task_config(name: str, task_manager=None, data_dir: str | Path | None = None, chat: bool = True) -> str | dict:
    """The spec lm-eval loads for `name`: the name itself, or its config dict with only the dataset location
    replaced by `data_dir`'s jsonl files (and, for `gsm8k_reasoning` without a chat template, its plain-text
    prompt layout)."""
    tm = task_manager or _task_manager([name])
    data_files = _data_files(data_dir) if data_dir is not None else None
    return _spec(name, tm, data_files, chat)


def _spec(name, tm, data_files, chat):
    overrides: dict[str, Any] = dict(_PLAIN_TEXT_OVERRIDES.get(name, {})) if not chat else {}
    if data_files:
        overrides.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": data_files})
    if not overrides:
        return name
    from lm_eval.tasks._index import Entry, Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    entry = tm.task_index.get(name)
    if entry is None and Path(name).is_file():  # a task YAML given by path
        entry = Entry(name=name, kind=Kind.TASK, yaml_path=Path(name))
    if entry is None or entry.kind is not Kind.TASK or entry.yaml_path is None:
        raise EvalInputError(f"data_dir applies to GSM8K tasks only, and {name!r} is a group or tag: evaluate it "
                             "in a separate call without data_dir.")
    cfg = load_yaml(entry.yaml_path, resolve_func=True)  # resolves `include:` and `!function`
    if data_files and cfg.get("dataset_path") not in GSM8K_DATASETS:
        raise EvalInputError(f"data_dir applies to GSM8K tasks only, and {name!r} reads {cfg.get('dataset_path')!r}: "
                             "evaluate it in a separate call without data_dir.")
    return {**cfg, **overrides}


def _load_tasks(names, tm, data_files, chat):
    """Build lm-eval Task/Group objects (this downloads or reads their datasets)."""
    objects = []
    # Unreachable Hub: read the local cache only. Otherwise every dataset file request is retried 5 times
    # with backoff (about 30 s per task) before the same failure.
    offline = data_files is None and not _hub_reachable()
    for name in names:
        spec = _spec(name, tm, data_files, chat)
        try:
            with _hub_offline() if offline else contextlib.nullcontext():
                loaded = tm.load([spec])
        except Exception as e:
            first = (str(e).splitlines() or [""])[0][:300]
            why = "the Hugging Face Hub is not reachable and the dataset is not cached; " if offline else ""
            fix = (f"{why}offline, pass data_dir (CLI: --data-dir) holding GSM8K's train.jsonl and test.jsonl"
                   if data_files is None else "check that the jsonl files hold GSM8K rows ('question', 'answer')")
            raise EvalInputError(f"Could not load the data of task {name!r} ({type(e).__name__}: {first}): {fix}.") from e
        objects.extend(loaded["groups"].values() if loaded["groups"] else loaded["tasks"].values())
    return objects


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub endpoint accepts a connection (False in offline mode, where libraries read the cache)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _hub_offline():
    """Offline mode for this block only, as `HF_HUB_OFFLINE=1` sets it: datasets are read from the cache."""
    import datasets.config
    from huggingface_hub import constants

    flags = [(constants, "HF_HUB_OFFLINE"), (datasets.config, "HF_HUB_OFFLINE"),
             (datasets.config, "HF_DATASETS_OFFLINE")]
    saved = [getattr(module, name) for module, name in flags]
    for module, name in flags:
        setattr(module, name, True)
    try:
        yield
    finally:
        for (module, name), value in zip(flags, saved):
            setattr(module, name, value)


def _parse_gen_kwargs(gen_kwargs) -> dict:
    if not gen_kwargs:
        return {}
    if isinstance(gen_kwargs, str):
        from lm_eval.utils import simple_parse_args_string

        return simple_parse_args_string(gen_kwargs)
    return dict(gen_kwargs)
