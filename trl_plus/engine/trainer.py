"""`PlusGRPOTrainer`: TRL's `GRPOTrainer` with a registry of advantage estimators and parts that compose.

TRL 1.16's `GRPOTrainer._generate_and_score_completions` generates, scores and computes GRPO advantages in one long
method. trl-plus never copies it. Instead, read top to bottom:

1. `__init__` picks the estimator (`config.advantage_estimator`, looked up in `estimators.ESTIMATORS`) and prepares
   what it needs: step rewards (`process_rewards`), the overlong reward (`overlong`), a reference model for a KL
   term in the reward (`_reference_logps_scope` lends TRL a non-zero `beta` while it builds and runs it).
2. `_calculate_rewards` wraps TRL's to check every reward function's output and to keep what TRL scored: the
   rewards of the whole generation batch, gathered from every process, and this process's prompts and
   completions (`self._scored`).
3. `_generate_and_score_completions` calls TRL once (`_rollout`), or several times with dynamic sampling
   (`dynamic_sampling`), then `compute_advantages(out)` builds one `EstimatorContext` (`context.py`; rewards, groups, mask,
   KL-in-reward, log-probs, greedy baseline, steps, a cross-process reducer) and calls the estimator, which returns
   this process's advantages, (B,) or (B, T); `_compute_loss` accepts both. An estimator that needs a critic
   (`gae`) runs only in a preset that trains one (`trains_critic`: `PPOTrainer` adds `ctx.values`, reads
   `ctx.returns`).
4. `_compute_loss` is TRL's, except for the NLL of best-of-K (`best_of_k`) and a KL term with another estimator
   than TRL's k3 (`kl_loss`).
5. Checkpoints carry the trainer's own state (the dynamic-sampling RNG) through `checkpoint_state.ExtraCheckpointState`;
   `Scored` (what TRL scored for a batch) lives in `scored.py`.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch
from accelerate.utils import gather_object
from trl import GRPOTrainer

from trl_plus.core import weighted_rewards
from trl_plus.engine import best_of_k
from trl_plus.engine.checkpoint_state import STATE_FILE, ExtraCheckpointState
from trl_plus.engine.config import PlusGRPOConfig, critic_missing, setting
from trl_plus.engine.context import build_context
from trl_plus.engine.dynamic_sampling import DynamicSampling
from trl_plus.engine.estimators import get_estimator
from trl_plus.engine.greedy_baseline import GreedyBaseline
from trl_plus.engine.kl_loss import loss_with_kl
from trl_plus.engine.machine import check_world_size
from trl_plus.engine.overlong import with_overlong_reward
from trl_plus.engine.process_rewards import attach_process_rewards, local_step_rows, set_reward_columns
from trl_plus.engine.reference import lent_beta, match_reference_to_policy, needs_reference_logps
from trl_plus.engine.scored import Scored
from trl_plus.engine.training_checks import check_config, check_trainer, checked_reward, warn_if_past_context
from trl_plus.qlora import use_exact_4bit_matmul

__all__ = ["STATE_FILE", "PlusGRPOTrainer", "Scored"]


class PlusGRPOTrainer(ExtraCheckpointState, DynamicSampling, GreedyBaseline, GRPOTrainer):
    """GRPOTrainer whose advantages come from the estimator registry; same arguments as `trl.GRPOTrainer`, plus the
    keyword `process_reward_funcs` for estimators that need step rewards (`advantage_estimator='process'`)."""

    _tag_names: ClassVar[list[str]] = ["trl", "trl-plus"]
    config_class: ClassVar[type] = PlusGRPOConfig  # each preset names its config class
    trains_critic: ClassVar[bool] = False  # a preset with a critic (PPOTrainer) fills ctx.values, trains on returns

    def __init__(self, model, reward_funcs=None, args=None, *more, process_reward_funcs=None, **kwargs):
        args = self.resolve_config(model, args)
        check_config(args)
        call = inspect.signature(GRPOTrainer.__init__).bind(self, model, reward_funcs, args, *more, **kwargs).arguments
        call.pop("self")
        self.estimator = get_estimator(setting(args, "advantage_estimator"))
        if self.estimator.needs_critic and not self.trains_critic:
            raise ValueError(critic_missing(self.estimator.name, type(self).__name__))
        outcome_weights = attach_process_rewards(self, call, process_reward_funcs, args)
        if self.estimator.needs_greedy_baseline and call.get("rollout_func") is not None:
            raise NotImplementedError(f"advantage_estimator={self.estimator.name!r} cannot decode greedily through "
                                      "a custom rollout_func; remove rollout_func.")
        if setting(args, "overlong_buffer_len") is not None:
            call["reward_funcs"], call["reward_processing_classes"], call["args"] = with_overlong_reward(
                call["reward_funcs"], call.get("reward_processing_classes"), args)
        args = call["args"]
        # TRL checks reward_weights against its (outcome + adapter) list: lend it None, set the weights after.
        saved_weights = args.reward_weights
        if self.process_adapters:
            args.reward_weights = None
        try:
            with lent_beta(args, needs_reference_logps(args)):
                super().__init__(**call)
        finally:
            args.reward_weights = saved_weights
        self.beta = self.args.beta
        use_exact_4bit_matmul(self.model, self.ref_model)  # 4-bit layers train and evaluate on one path
        check_world_size(self.accelerator.num_processes)
        match_reference_to_policy(self, model)
        self._scored: Scored | None = None
        set_reward_columns(self, outcome_weights)
        self.setup_dynamic_sampling()
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

    # ----- generation and scoring -------------------------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        funcs = self.reward_funcs  # checked for the call: errors name the function and the fix
        self.reward_funcs = [checked_reward(f, name) for f, name in zip(funcs, self.reward_func_names)]
        try:
            rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        finally:
            self.reward_funcs = funcs
        steps = [a.steps for a in self.process_adapters] if self.process_adapters else None
        self._scored = Scored(inputs, prompts, completions, completion_ids_list, rewards_per_func, steps,
                              self.local_rows(len(prompts)))
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        if self.model.training and setting(self.args, "dynamic_sampling"):
            out = self.sample_dynamically(inputs)
        else:
            out = self._rollout(inputs)
        advantages = self.compute_advantages(out)
        if advantages is not None:
            out["advantages"] = advantages
            self._log_advantages(advantages, self.loss_mask(out))
        if self.estimator.loss == "nll":
            out["num_items_in_batch"] = best_of_k.kept_tokens(self, out)  # the NLL normaliser
        return out

    def _rollout(self, inputs):
        """One call of TRL's generation, scoring and GRPO advantages."""
        with self._reference_logps_scope():
            out = super()._generate_and_score_completions(inputs)
        warn_if_past_context(self, out["prompt_ids"].size(1))
        return out

    def _reference_logps_scope(self):
        return lent_beta(self, needs_reference_logps(self.args))

    # ----- advantages -------------------------------------------------------------------------------------------------

    def compute_advantages(self, out: dict[str, Any]) -> torch.Tensor | None:
        """This process's advantages, (B,) or (B, T), from the configured estimator; None keeps TRL's."""
        return self.estimator.fn(build_context(self, out))

    def _local_step_rows(self) -> list[tuple[list[int], list[float | None], int]]:
        """This process's B rows: (token index of each step's end, step rewards, completion length in tokens)."""
        return local_step_rows(self, self._scored)

    def _gather_rows(self, rows: list) -> list:
        """The rows of every process, concatenated in process order (TRL's order of the gathered rewards)."""
        return gather_object(rows) if self.accelerator.num_processes > 1 else rows

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

    # ----- loss -------------------------------------------------------------------------------------------------------

    def _compute_loss(self, model, inputs):
        if self.estimator.loss == "nll":
            return best_of_k.nll_loss(self, model, inputs)
        estimator = setting(self.args, "kl_in_loss_estimator")
        if self.beta != 0.0 and estimator != "k3":
            return loss_with_kl(self, super()._compute_loss, model, inputs, estimator)
        return super()._compute_loss(model, inputs)

    # ----- helpers shared by the parts --------------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return "train" if self.model.training else "eval"

    @property
    def group_size(self) -> int:
        return self.num_generations if self.mode == "train" else self.num_generations_eval

    def total_rewards(self, rewards_per_func: torch.Tensor | None = None, weights: torch.Tensor | None = None):
        """Weighted sum of the reward functions, (N,); NaN where every function abstained."""
        rpf = self._scored.rewards_per_func if rewards_per_func is None else rewards_per_func
        return weighted_rewards(rpf, self.reward_weights if weights is None else weights)

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

    @property
    def forward_batch_size(self) -> int:
        """Rows per forward pass over a generation batch (the per-device batch size of the mode)."""
        return self.args.per_device_train_batch_size if self.mode == "train" else self.args.per_device_eval_batch_size

    def log_metric(self, name: str, value: float) -> None:
        self._metrics[self.mode][name].append(float(value))

    def loss_mask(self, out: dict[str, Any]) -> torch.Tensor:
        mask = out["completion_mask"]
        return mask * out["tool_mask"] if "tool_mask" in out else mask

    # ----- state trl-plus adds, saved with every checkpoint and restored on resume ---------------------------------

    def checkpoint_state(self) -> dict | None:
        """This process's extra state (the dynamic-sampling RNG), or None when there is none."""
        if not setting(self.args, "dynamic_sampling"):
            return None
        return self.dynamic_sampling_state()

    def load_checkpoint_state(self, state: dict) -> None:
        """Restore what `checkpoint_state` returned."""
        self.load_dynamic_sampling_state(state)
