"""Checks of a training setup (config, constructed trainer, reward outputs, context length) that TRL leaves to a
deep library error, a NaN or a silent no-op. The functional core's argument checks are `trl_plus.core_validation`.

Each raises `ValueError` (or warns) naming the problem and the fix. The trainers run them through
the base seam; the CLI also runs them for TRL's own `GRPOTrainer`.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import torch
from trl import GRPOTrainer


def check_config(args) -> None:
    """Checks of a GRPO-family config that TRL leaves to a deep library error; ValueError naming the fix."""
    n = getattr(args, "max_completion_length", None)
    if n is not None and n <= 0:
        raise ValueError(f"max_completion_length must be a positive number of tokens (got {n}): it caps the tokens "
                         "generated per completion, e.g. 256 for GSM8K-style answers.")


def check_trainer(trainer: GRPOTrainer) -> None:
    """Checks of a constructed `GRPOTrainer` (any, TRL's included) that would otherwise fail late, deep inside a
    library, or silently: ValueError naming the problem and the fix."""
    from datasets import IterableDataset
    from trl.data_utils import is_conversational

    import reward_fns

    name = type(trainer).__name__
    for func, func_name in zip(trainer.reward_funcs, trainer.reward_func_names):
        if reward_fns.is_process_reward(func):
            raise ValueError(f"Reward function {func_name!r} is a step-level (process) reward: it returns (offset, "
                             f"reward) steps per completion, which {name} cannot use. Train with ps_grpo "
                             "(ProcessGRPOTrainer), or pick an outcome reward.")
    tok = trainer._tokenizer
    if tok.pad_token_id is None:
        raise ValueError("The tokenizer has neither a pad token nor an EOS token, so completions cannot be padded or "
                         "ended: set tokenizer.pad_token (and eos_token) and pass it as processing_class.")
    ds = trainer.train_dataset
    if ds is None or isinstance(ds, IterableDataset) or not hasattr(ds, "__len__"):
        return
    need = trainer.args.generation_batch_size // trainer.num_generations
    if len(ds) < need:
        raise ValueError(f"train_dataset has {len(ds)} prompts, but one generation batch needs {need} distinct "
                         f"prompts (generation_batch_size {trainer.args.generation_batch_size} / num_generations "
                         f"{trainer.num_generations}); TRL's sampler would yield no batch and training would end "
                         "without a single step. Add prompts, or lower per_device_train_batch_size, "
                         "steps_per_generation or the number of processes.")
    first = ds[0]
    template = getattr(trainer, "chat_template", None) or getattr(trainer.processing_class, "chat_template", None) \
        or getattr(tok, "chat_template", None)
    if "prompt" in first and is_conversational({"prompt": first["prompt"]}) and not template:
        raise ValueError("The prompts are conversational (lists of messages), but the tokenizer has no chat template "
                         "to turn them into text. Use plain-text prompts (strings; CLI: --conversational false), set "
                         "tokenizer.chat_template and pass the tokenizer as processing_class, or use a chat/instruct "
                         "model.")


@contextlib.contextmanager
def naming_reward_errors(name: str, kind: str = "reward function"):
    """Let an error of a user's reward function through unchanged, with a note naming the function and the fix.

    The one way trl-plus reports reward errors: the exception keeps its type and traceback (so `except` clauses
    and debuggers still work), and the note says which function raised and what to do instead.
    """
    try:
        yield
    except Exception as exc:
        exc.add_note(f"(raised by the {kind} {name!r}: a reward function that cannot score a completion should "
                     "return None for it rather than raise)")
        raise


def checked_reward(func, name: str):
    """`func` with its output checked; nn.Modules and async functions are returned as they are."""
    from trl.trainer.utils import is_async_callable

    if isinstance(func, torch.nn.Module) or is_async_callable(func):
        return func

    def checked(*args, **kwargs):
        with naming_reward_errors(name):
            result = func(*args, **kwargs)
        _check_rewards(result, name)
        return result

    return checked


def _check_rewards(result, name: str) -> None:
    """TRL turns None into NaN (abstain) and checks the length; anything else that is not a finite number (a missing
    list, strings, step lists, inf) would fail deep in torch or put inf into the loss."""
    if isinstance(result, (str, bytes)) or not hasattr(result, "__len__") or not hasattr(result, "__iter__"):
        raise ValueError(f"Reward function {name!r} returned {type(result).__name__}; it must return a list with one "
                         "float per completion (None to abstain on a completion).")
    for i, value in enumerate(result):
        if value is None:
            continue
        try:
            number = None if isinstance(value, (str, bytes)) else float(value)
        except (TypeError, ValueError):
            number = None
        if number is None:
            steps = " Step lists are a process reward's output: train those with ps_grpo." \
                if isinstance(value, (list, tuple)) else ""
            raise ValueError(f"Reward function {name!r} returned {value!r:.60} for completion {i}; rewards must be "
                             f"numbers (None to abstain).{steps}")
        if math.isinf(number):
            raise ValueError(f"Reward function {name!r} returned {number} for completion {i}; rewards must be finite "
                             "(None or NaN abstains). Clip the reward or return None where it is undefined.")


def warn_if_past_context(trainer: GRPOTrainer, prompt_width: int) -> None:
    """TRL 1.16 has no max_prompt_length and never truncates prompts: warn when the longest prompt of the batch plus
    max_completion_length exceeds the model's context (positions the model was not trained on, or an index error
    inside the model). The message is the same for the whole run, so Python's warning filter shows it once."""
    config = trainer.accelerator.unwrap_model(trainer.model).config
    limit = getattr(config.get_text_config() if hasattr(config, "get_text_config") else config,
                    "max_position_embeddings", None)
    budget = trainer.max_completion_length or 0
    if isinstance(limit, int) and prompt_width + budget > limit:
        warnings.warn(f"A prompt plus max_completion_length ({budget}) exceeds the model's context "
                      f"(max_position_embeddings={limit}); TRL 1.16 does not truncate prompts (it has no "
                      "max_prompt_length). Shorten or filter the long prompts, or lower max_completion_length.",
                      UserWarning, stacklevel=2)
