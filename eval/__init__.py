"""lm-eval-harness hooks for trl-plus.

- `evaluate(model_or_path, tasks, limit=None, data_dir=None, ...)`: lm-eval's `simple_evaluate` on a live
  model or a checkpoint / PEFT adapter directory, returning lm-eval's results plus a flat `metrics` view.
- `LmEvalCallback(trainer, tasks, eval_steps=None, on_save=False, on_train_end=True, ...)`: evaluates the live model
  during training and logs `lm_eval/<task>/<metric>,<filter>` into the trainer's logs.
- Tasks: lm-eval's `gsm8k` (offline through `data_dir`) and our `gsm8k_reasoning` (in `eval/tasks/`).

Names are imported lazily so that `import eval` does not import torch or lm-eval.
"""

import importlib

_LAZY = {
    "evaluate": "eval.harness",
    "load_model": "eval.harness",
    "load_tokenizer": "eval.harness",
    "task_config": "eval.harness",
    "flat_metrics": "eval.harness",
    "EvalInputError": "eval.harness",
    "LmEvalCallback": "eval.callback",
    "TASKS_DIR": "eval.tasks",
}

__all__ = ["TASKS_DIR", "EvalInputError", "LmEvalCallback", "evaluate", "flat_metrics", "load_model", "load_tokenizer", "task_config"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'eval' has no attribute {name!r}")
