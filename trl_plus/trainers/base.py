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
import logging
import os
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from accelerate.utils import gather_object
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOConfig, GRPOTrainer

from trl_plus.checks import check_config, check_trainer, checked_reward, warn_if_past_context

logger = logging.getLogger(__name__)

# Per-process state a trainer adds to TRL's (see `checkpoint_state`), one file per checkpoint.
STATE_FILE = "trl_plus_state.pt"

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

    config_class: ClassVar[type] = GRPOConfig  # each algorithm names its config class

    def __init__(self, model, reward_funcs, args=None, *more, **kwargs):
        args = self.resolve_config(model, args)
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

    @classmethod
    def resolve_config(cls, model, args):
        """`args`, or a default `config_class` named after the model; a TypeError for another config class."""
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            return cls.config_class(f"{name.split('/')[-1]}-{cls.__name__.removesuffix('Trainer')}")
        if not isinstance(args, cls.config_class):
            raise TypeError(f"{cls.__name__} needs a {cls.config_class.__name__} (got {type(args).__name__}), so that "
                            f"its settings are checked: build it with trl_plus.{cls.config_class.__name__}(...).")
        return args

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
        self.reward_funcs = [checked_reward(f, name) for f, name in zip(funcs, self.reward_func_names)]
        try:
            rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        finally:
            self.reward_funcs = funcs
        self._scored = Scored(inputs, prompts, completions, completion_ids_list, rewards_per_func)
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        with self._reference_logps_scope():
            out = super()._generate_and_score_completions(inputs)
        warn_if_past_context(self, out["prompt_ids"].size(1))
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

    # ----- state trl-plus adds, saved with every checkpoint and restored on resume ---------------------------------

    def checkpoint_state(self) -> dict | None:
        """This process's extra state (e.g. an RNG of the trainer's own), or None when there is none."""
        return None

    def load_checkpoint_state(self, state: dict) -> None:
        """Restore what `checkpoint_state` returned."""

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if type(self).checkpoint_state is PlusGRPOTrainer.checkpoint_state:
            return
        states = gather_object([self.checkpoint_state()])  # every rank's state, written once by the main one
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            torch.save({"per_process": states}, os.path.join(folder, STATE_FILE))

    def _load_extra_state(self, checkpoint: str | None) -> None:
        path = None if checkpoint is None else os.path.join(checkpoint, STATE_FILE)
        if path is None or not os.path.isfile(path):
            return
        states = torch.load(path, weights_only=True)["per_process"]
        if len(states) != self.accelerator.num_processes:
            logger.warning(f"{path} holds the state of {len(states)} processes, but this run has "
                           f"{self.accelerator.num_processes}: the trl-plus state starts afresh.")
            return
        self.load_checkpoint_state(states[self.accelerator.process_index])

    # Transformers calls `_load_rng_state(checkpoint)` when resuming, but not with `ignore_data_skip` mid-epoch;
    # `_load_optimizer_and_scheduler(checkpoint)` runs on every resume. Loading twice is harmless (same file,
    # nothing happens in between).
    def _load_rng_state(self, checkpoint):
        super()._load_rng_state(checkpoint)
        self._load_extra_state(checkpoint)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        self._load_extra_state(checkpoint)
