"""The one seam between trl-plus and TRL's `GRPOTrainer`.

TRL 1.16's `GRPOTrainer._generate_and_score_completions` generates, scores and computes GRPO
advantages in one long method. trl-plus never copies it. Instead:

1. `_calculate_rewards` is wrapped to keep what TRL just scored: the rewards of the whole
   generation batch, already gathered from every process, plus this process's prompts and
   completions (`self._scored`).
2. `_generate_and_score_completions` calls `super()` and then hands its output to
   `compute_advantages(out)`, a hook each algorithm overrides. The hook recomputes the
   advantages with the functional core (`trl_plus.core`) from the gathered rewards and returns
   this process's slice, shape (B,) or (B, T); `_compute_loss` accepts both.

Algorithms that put a KL penalty into the *reward* (REINFORCE++, ReMax) need the reference
log-probs even though the loss has no KL term (`beta = 0`). TRL builds a reference model and
computes its log-probs only when `beta != 0`, so `_reference_logps_scope` lends TRL a non-zero
`beta` for exactly those two places (construction and scoring) and restores it, which reuses
TRL's reference handling (separate model, PEFT adapter disabled, DeepSpeed/FSDP preparation).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from trl import GRPOTrainer

# Any non-zero value makes TRL build and run the reference model; the loss never sees it.
_REFERENCE_ONLY_BETA = 1.0


@dataclass
class Scored:
    """What TRL scored for the current generation batch (set by `_calculate_rewards`)."""

    inputs: list[dict[str, Any]]  # this process's rows
    prompts: list
    completions: list
    completion_ids: list[list[int]]
    rewards_per_func: torch.Tensor  # (N_global, n_funcs), NaN where a function abstained


class PlusGRPOTrainer(GRPOTrainer):
    """Base class of the trl-plus trainers: `GRPOTrainer` plus the advantage hook."""

    def __init__(self, model, reward_funcs, args=None, *more, **kwargs):
        if args is not None:
            check_config(args)
        borrow = args is not None and self._needs_reference_logps(args) and args.beta == 0.0
        if borrow:
            args.beta = _REFERENCE_ONLY_BETA
        try:
            super().__init__(model, reward_funcs, args, *more, **kwargs)
        finally:
            if borrow:
                args.beta = 0.0
        self.beta = self.args.beta
        self._scored: Scored | None = None
        check_trainer(self)

    # ----- hooks for subclasses ---------------------------------------------------------------

    @staticmethod
    def _needs_reference_logps(args) -> bool:
        """Whether rollouts need reference log-probs for a KL term in the reward."""
        return getattr(args, "kl_coef", 0.0) > 0.0

    def compute_advantages(self, out: dict[str, Any]) -> torch.Tensor | None:
        """Return this process's advantages, (B,) or (B, T), or None to keep TRL's."""
        return None

    # ----- the seam -----------------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        funcs = self.reward_funcs  # checked for the call: errors name the function and the fix
        self.reward_funcs = [_checked_reward(f, name) for f, name in zip(funcs, self.reward_func_names)]
        try:
            rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        finally:
            self.reward_funcs = funcs
        self._scored = Scored(inputs, prompts, completions, completion_ids_list, rewards_per_func)
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        with self._reference_logps_scope():
            out = super()._generate_and_score_completions(inputs)
        _warn_if_past_context(self, out["prompt_ids"].size(1))
        advantages = self.compute_advantages(out)
        if advantages is not None:
            out["advantages"] = advantages
            self._log_advantages(advantages, self.loss_mask(out))
        return out

    def _log_advantages(self, advantages: torch.Tensor, mask: torch.Tensor) -> None:
        """Show the advantages actually trained on in TRL's completions table (TRL logged GRPO's).

        For (B, T) advantages a row shows its first valid token's value.
        """
        if advantages.dim() == 2:
            first = mask.long().argmax(dim=1)
            advantages = advantages.gather(1, first[:, None]).squeeze(1) * mask.any(dim=1)
        gathered = self.accelerator.gather(advantages.detach().float()).tolist()
        logged = self._logs["advantages"]
        if len(logged) >= len(gathered):
            for k, value in enumerate(gathered):
                logged[len(logged) - len(gathered) + k] = value

    @contextlib.contextmanager
    def _reference_logps_scope(self):
        borrow = self.beta == 0.0 and self._needs_reference_logps(self.args)
        if borrow:
            self.beta = _REFERENCE_ONLY_BETA
        try:
            yield
        finally:
            if borrow:
                self.beta = 0.0

    # ----- helpers shared by the algorithms -----------------------------------------------------

    @property
    def mode(self) -> str:
        return "train" if self.model.training else "eval"

    @property
    def group_size(self) -> int:
        return self.num_generations if self.mode == "train" else self.num_generations_eval

    def total_rewards(self, rewards_per_func: torch.Tensor | None = None) -> torch.Tensor:
        """Weighted sum of the reward functions, (N_global,); NaN where every function abstained."""
        rpf = self._scored.rewards_per_func if rewards_per_func is None else rewards_per_func
        rewards = (rpf * self.reward_weights.to(rpf.device).unsqueeze(0)).nansum(dim=1)
        rewards[torch.isnan(rpf).all(dim=1)] = torch.nan
        return rewards

    def group_ids(self, n: int) -> torch.Tensor:
        """Group index of each gathered row: TRL's sampler puts the G copies of a prompt side by side."""
        return torch.arange(n, device=self.accelerator.device) // self.group_size

    def local_rows(self, n_local: int) -> slice:
        """The rows of the gathered batch that belong to this process."""
        start = self.accelerator.process_index * n_local
        return slice(start, start + n_local)

    def reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over processes (the `reducer` of the functional core)."""
        if self.accelerator.num_processes == 1:
            return t
        return self.accelerator.reduce(t, reduction="sum")

    def rollout_logps(self, out: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-token log-probs of the sampled tokens under the rollout policy and the reference, (B, T).

        TRL skips the rollout policy's pass when training is on-policy (the loss then reuses its own
        forward), so it is computed here with TRL's helper when missing.
        """
        old = out.get("old_per_token_logps")
        if old is None:
            ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
            mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
            with torch.no_grad():
                old, _, _ = self._get_per_token_logps_and_entropies(
                    self.model, ids, mask, out["completion_ids"].size(1), batch_size=self._logps_batch_size
                )
        return old, out.get("ref_per_token_logps")

    @property
    def _logps_batch_size(self) -> int:
        return self.args.per_device_train_batch_size if self.mode == "train" else self.args.per_device_eval_batch_size

    def log_metric(self, name: str, value: float) -> None:
        self._metrics[self.mode][name].append(float(value))

    def loss_mask(self, out: dict[str, Any]) -> torch.Tensor:
        mask = out["completion_mask"]
        return mask * out["tool_mask"] if "tool_mask" in out else mask


# ----- input checks (shared with the CLI, which also runs them for TRL's own GRPOTrainer) -----------------------


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


def _checked_reward(func, name: str):
    """`func` with its output checked; nn.Modules and async functions are returned as they are."""
    from trl.trainer.utils import is_async_callable

    if isinstance(func, torch.nn.Module) or is_async_callable(func):
        return func

    def checked(*args, **kwargs):
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            exc.add_note(f"(raised by the reward function {name!r}: a reward function that cannot score a "
                         "completion should return None for it rather than raise)")
            raise
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


def _warn_if_past_context(trainer: GRPOTrainer, prompt_width: int) -> None:
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
