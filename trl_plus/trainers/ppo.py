"""PPO with a learned critic and GAE, a preset of the engine (TRL 1.x removed its own `PPOTrainer`).

PPO for LLMs as in InstructGPT (Ouyang et al. 2022, https://huggingface.co/papers/2203.02155): the outcome
reward sits on the last valid completion token, a per-token KL penalty against the reference policy
(`kl_coef`, any estimator) is part of the reward, advantages come from GAE (Schulman et al. 2015,
https://huggingface.co/papers/1506.02438) on the critic's values, whitened over all valid tokens of all
processes, and the GAE returns are the critic's targets (clipped value loss). The policy loss, the ratio and its
clipping, PPO epochs (`num_iterations`) and minibatches (`steps_per_generation`) are TRL's own.

On the engine, PPO is the `gae` estimator (`trl_plus/engine/estimators.py`) plus the critic component that this
preset owns (no TRL method body is copied):
- `compute_advantages`: the engine's `EstimatorContext` gets the critic's values `V_old` (no grad) for every
  completion token; the `gae` estimator returns the advantages and sets `ctx.returns`. Values, returns and value
  mask travel with TRL's batch, so TRL's shuffling and minibatch split keep them aligned with the advantages.
- `_compute_loss`: the engine's loss; it remembers the micro-batch for the critic, and zeroes the policy's loss
  during `critic_warmup_steps`.
- `training_step`: after TRL's forward/backward of the policy, the critic's forward/backward on the same
  micro-batch (the policy's graph is freed by then, so the two never sit in memory together).
- A callback's `on_optimizer_step`: the critic's optimizer steps together with the policy's (same accumulation
  boundaries, also on a resumed run).

The config keeps PPO's field names as aliases of the engine's: `kl_coef` = `kl_in_reward_coef`, `kl_estimator` =
`kl_in_reward_estimator`. `num_generations` (G): TRL requires G >= 2. PPO uses no groups: the critic is the
baseline, so G only sets how many samples each prompt gets (a batch of B completions holds B / G distinct prompts).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from trl_plus.critic import STATE_FILE as CRITIC_STATE_FILE
from trl_plus.critic import Critic, clipped_value_loss, explained_variance
from trl_plus.engine.config import PlusGRPOConfig, apply_alias, check_kl_aliases
from trl_plus.engine.context import build_context
from trl_plus.engine.estimators import get_estimator
from trl_plus.engine.trainer import PlusGRPOTrainer

logger = logging.getLogger(__name__)
CRITIC_DIR = "critic"  # sub-folder of the saved model holding the critic


@dataclass
class PPOConfig(PlusGRPOConfig):
    """Configuration of `PPOTrainer`: `PlusGRPOConfig` with `advantage_estimator='gae'` plus the critic's fields.

    Defaults follow TRL's former `PPOConfig` and OpenRLHF: `gamma=1`, `lam=0.95`, `vf_coef=0.1`,
    `cliprange_value=0.2`, `kl_coef=0.01` (OpenRLHF's; TRL's former 0.05 swamps rewards in [0, 1] over a few dozen
    tokens) with the k1 estimator, no KL in the loss (`beta=0`).
    """

    trains_critic: ClassVar[bool] = True

    advantage_estimator: str = field(default="gae", metadata={"help": "'gae', or another estimator registered with "
                                                                     "needs_critic=True."})
    kl_in_reward_coef: float = field(default=0.01, metadata={"help": "Coefficient of the per-token KL penalty in "
                                                                     "the reward (alias: kl_coef)."})
    value_model_path: str | None = field(
        default=None,
        metadata={"help": "Local folder or hub id of the critic's starting weights (a causal LM, or a 1-label "
                          "sequence classifier such as a reward model), used when the trainer gets no value_model. "
                          "None: the policy's weights with a fresh value head (under PEFT: a second LoRA adapter)."},
    )
    critic_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the critic's own AdamW optimizer (constant); None: "
                                        "learning_rate."},
    )
    vf_coef: float = field(default=0.1, metadata={"help": "Coefficient of the value loss (scales the critic's "
                                                          "gradient; the critic has its own optimizer)."})
    cliprange_value: float | None = field(
        default=0.2, metadata={"help": "Clip the new values to V_old +- cliprange_value in the value loss; None "
                                       "disables value clipping."},
    )
    lam: float = field(default=0.95, metadata={"help": "GAE lambda, in [0, 1] (1: Monte-Carlo returns, 0: TD(0))."})
    kl_coef: float | None = field(
        default=None, metadata={"help": "Alias of kl_in_reward_coef (default 0.01): the per-token KL penalty in the "
                                        "reward; 0 disables it and the reference model, unless beta > 0."},
    )
    kl_estimator: str | None = field(
        default=None, metadata={"help": "Alias of kl_in_reward_estimator: 'k1' (default), 'k2', 'k3' or 'abs' "
                                        "(Schulman 2020)."}
    )
    critic_warmup_steps: int = field(
        default=0, metadata={"help": "Train only the critic for this many optimizer steps (the policy's loss is 0), "
                                     "as verl and OpenRLHF do."},
    )

    def __post_init__(self):
        check_kl_aliases(self, ("kl_coef", "kl_estimator"))
        apply_alias(self, "kl_coef", "kl_in_reward_coef")
        apply_alias(self, "kl_estimator", "kl_in_reward_estimator")
        if not get_estimator(self.advantage_estimator).needs_critic:
            raise ValueError(f"PPOConfig got advantage_estimator={self.advantage_estimator!r}, which uses no critic: "
                             "use 'gae', or trl_plus.PlusGRPOConfig for critic-free estimators.")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1] (got {self.lam}); PPO for LLMs uses gamma=1, lam=0.95.")
        if self.vf_coef <= 0:
            raise ValueError(f"vf_coef must be > 0 (got {self.vf_coef}): with 0 the critic never learns.")
        if self.cliprange_value is not None and self.cliprange_value <= 0:
            raise ValueError(f"cliprange_value must be > 0 or None (got {self.cliprange_value}).")
        if self.critic_learning_rate is not None and self.critic_learning_rate <= 0:
            raise ValueError(f"critic_learning_rate must be > 0 or None (got {self.critic_learning_rate}).")
        if self.critic_warmup_steps < 0:
            raise ValueError(f"critic_warmup_steps must be >= 0 (got {self.critic_warmup_steps}).")
        super().__post_init__()


class _CriticStep(TrainerCallback):
    """Steps the critic's optimizer right after the policy's."""

    def __init__(self, trainer: PPOTrainer):
        self.trainer = trainer

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.trainer.critic_optimizer_step()


class PPOTrainer(PlusGRPOTrainer):
    """PPO with a learned critic (`trl_plus.critic.Critic`) and GAE.

    Takes `trl.GRPOTrainer`'s arguments plus `value_model` (a model, a local path or a hub id; default: the
    policy's weights with a fresh value head). Advantages are (B, T). Logs `ppo/value_loss`,
    `ppo/value_clipfrac`, `ppo/value_grad_norm`, `ppo/explained_variance`, `ppo/value_mean`,
    `ppo/returns_mean` and, with `kl_coef > 0`, `ppo/kl` (mean per-token KL estimate in the reward; the engine
    also logs it as `gae/kl_reward`). `save_model`
    writes the critic to `<output_dir>/critic`; checkpoints hold its exact state in `critic_state.pt`.
    """

    _tag_names: ClassVar[list[str]] = ["trl", "trl-plus", "ppo"]
    config_class = PPOConfig
    trains_critic: ClassVar[bool] = True

    def __init__(self, model, reward_funcs, args: PPOConfig | None = None, *more, value_model=None, **kwargs):
        super().__init__(model, reward_funcs, args, *more, **kwargs)
        self.critic = Critic.build(self.model, value_model if value_model is not None else self.args.value_model_path,
                                   seed=self.args.seed, tokenizer=self._tokenizer,
                                   model_init_kwargs=self.args.model_init_kwargs)
        self.critic.make_optimizer(self.args, self.args.critic_learning_rate or self.args.learning_rate)
        self._critic_batch = None
        self.add_callback(_CriticStep(self))

    # ----- rollout: values, token rewards, GAE ---------------------------------------------------------------

    def compute_advantages(self, out):
        ctx = build_context(self, out)
        with torch.no_grad(), self.critic.active():
            ctx.values = self.critic.values(*self._sequence(out), batch_size=self.forward_batch_size)
        advantages = self.estimator.fn(ctx)
        if ctx.returns is None:
            raise ValueError(f"advantage_estimator={self.estimator.name!r} set no ctx.returns: an estimator registered "
                             "with needs_critic=True must set the critic's targets (B, T).")
        valid = ctx.scored_mask()  # an unscorable row carries no signal
        values = torch.where(valid, ctx.values, 0.0)
        out["old_values"], out["returns"], out["value_mask"] = values, ctx.returns, valid.to(ctx.mask.dtype)
        self._log_rollout(values, ctx.returns, valid, ctx.kl if ctx.kl_coef > 0 else None)
        return advantages

    def _sequence(self, batch):
        ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
        attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        return ids, attention, batch["completion_ids"].size(1)

    def _log_rollout(self, values, returns, valid, kl) -> None:
        parts = [valid.sum(), (values * valid).sum(), (returns * valid).sum()]
        if kl is not None:
            parts.append(torch.where(valid, kl, 0.0).sum())
        sums = self.reduce_sum(torch.stack([p.double() for p in parts]))
        n = sums[0].clamp(min=1)
        self.log_metric("ppo/value_mean", sums[1] / n)
        self.log_metric("ppo/returns_mean", sums[2] / n)
        if kl is not None:
            self.log_metric("ppo/kl", sums[3] / n)
        self.log_metric("ppo/explained_variance", explained_variance(values, returns, valid, self.reduce_sum))

    # ----- training: the policy's loss is TRL's; the critic trains on the same micro-batch ----------------------

    def _compute_loss(self, model, inputs):
        loss = super()._compute_loss(model, inputs)
        if self.mode == "train":
            self._critic_batch = inputs
            if self.state.global_step < self.args.critic_warmup_steps:
                # Zero gradient: Adam (m = v = 0) leaves the policy where it is, the critic alone learns.
                loss = loss * 0.0
        return loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        batch, self._critic_batch = self._critic_batch, None
        if batch is not None:
            with self.critic.active():
                value_loss = self.value_loss(batch)
                (self.args.vf_coef * value_loss / self.current_gradient_accumulation_steps).backward()
        return loss

    def value_loss(self, batch) -> torch.Tensor:
        """Clipped value loss of the critic on a (micro-)batch from `compute_advantages`, with grad; logged."""
        with self.critic.active():
            values = self.critic.values(*self._sequence(batch))
        loss, clipfrac = clipped_value_loss(values, batch["old_values"], batch["returns"], batch["value_mask"],
                                            self.args.cliprange_value)
        logged = self.accelerator.gather(torch.stack([loss.detach(), clipfrac.detach()]).reshape(1, 2)).mean(0)
        self.log_metric("ppo/value_loss", logged[0])
        self.log_metric("ppo/value_clipfrac", logged[1])
        return loss

    def critic_optimizer_step(self) -> None:
        self.log_metric("ppo/value_grad_norm", self.critic.step(self.accelerator, self.args.max_grad_norm))

    # ----- saving and resuming --------------------------------------------------------------------------------

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        super().save_model(output_dir, _internal_call)
        if not _internal_call and self.args.should_save:  # checkpoints hold the exact state instead
            self.critic.save(os.path.join(output_dir or self.args.output_dir, CRITIC_DIR))

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            checkpoint = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            folder = os.path.join(self._get_output_dir(trial=trial), checkpoint)
            torch.save(self.critic.training_state(), os.path.join(folder, CRITIC_STATE_FILE))

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        path = None if checkpoint is None else os.path.join(checkpoint, CRITIC_STATE_FILE)
        if path is None:
            return
        if not os.path.isfile(path):
            logger.warning(f"{checkpoint} holds no {CRITIC_STATE_FILE}: the critic starts afresh.")
            return
        self.critic.load_training_state(torch.load(path, map_location=self.accelerator.device, weights_only=True))
