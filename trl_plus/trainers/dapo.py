"""DAPO on TRL's GRPOTrainer (Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System at Scale",
https://huggingface.co/papers/2503.14476).

DAPO's four parts, each switchable:
1. Clip-higher: `epsilon=0.2`, `epsilon_high=0.28` (TRL's own fields, DAPO defaults here).
2. Dynamic sampling (`dynamic_sampling=True`): groups whose filter metric has zero spread are dropped and *new
   prompts* are drawn from the training set, generated and scored, up to `max_num_gen_batches` rounds.
3. Token-level loss: TRL's `loss_type="dapo"`.
4. Overlong reward shaping (`overlong_buffer_len`): TRL's `trl.rewards.get_soft_overlong_punishment` is appended
   to the reward functions with weight 1. Overlong *filtering* is TRL's `mask_truncated_completions=True`.
No KL (`beta=0`).

TRL has no hook for re-sampling, so the narrowest override is `_generate_and_score_completions`: it calls
`super()` once per round (TRL generates, scores, gathers and computes the GRPO advantages as usual) and keeps rows.
Multi-process rule: every group lives on one process (the per-process generation batch must be divisible by
`num_generations`), each process keeps the *first* K surviving groups of its own rows in round order (K = its
original number of groups; with one process: "the first K surviving groups"), and all processes run the same
number of rounds, continuing while any of them is short (all-reduce), so no rank waits and every rank ends with K
groups. At the cap, missing slots are filled with dropped groups whose loss mask and advantage are zeroed.
Kept rows keep TRL's advantages, which are group-normalised and so unaffected by the dropped groups; batch-level
normalisation (`scale_rewards="batch"`, `normalize_then_sum`) would not be, and is rejected with dynamic sampling.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from datasets import IterableDataset
from trl import GRPOConfig
from trl.rewards import get_soft_overlong_punishment

from trl_plus.trainers.base import STATE_FILE, PlusGRPOTrainer  # noqa: F401 - STATE_FILE re-exported
from trl_plus.trainers.rollout import concat_rollouts, select_rows


@dataclass
class DAPOConfig(GRPOConfig):
    """`GRPOConfig` with DAPO's defaults (clip-higher, token-level loss, no KL) and the DAPO fields."""

    epsilon: float = field(default=0.2, metadata={"help": "Lower clipping epsilon of the PPO ratio (DAPO: 0.2)."})
    epsilon_high: float | None = field(default=0.28, metadata={"help": "Upper clipping epsilon (clip-higher; "
                                                                       "DAPO: 0.28). Must be >= epsilon."})
    loss_type: str = field(default="dapo", metadata={"help": "Loss aggregation; 'dapo' is the paper's token-level "
                                                             "loss."})
    beta: float = field(default=0.0, metadata={"help": "KL coefficient; DAPO uses no KL term (0)."})
    overlong_buffer_len: int | None = field(
        default=None,
        metadata={"help": "Overlong reward shaping: when set, TRL's soft overlong punishment with this buffer "
                          "(L_cache) and L_max = max_completion_length is added as a reward function (weight 1). "
                          "Must be in [1, max_completion_length - 1]. Overlong filtering is TRL's "
                          "mask_truncated_completions."},
    )
    dynamic_sampling: bool = field(
        default=True,
        metadata={"help": "Drop groups whose filter metric has zero spread and draw new prompts until the batch is "
                          "full again (training only)."},
    )
    max_num_gen_batches: int = field(default=10, metadata={"help": "Most generation rounds per batch with dynamic "
                                                                   "sampling; 0 = no limit."})
    dynamic_sampling_metric: str | None = field(
        default=None,
        metadata={"help": "Name of the reward function whose spread decides if a group is kept (e.g. the accuracy "
                          "reward); None = the weighted total reward."},
    )
    dynamic_sampling_strict: bool = field(
        default=False,
        metadata={"help": "Raise when max_num_gen_batches rounds do not yield enough groups, instead of warning and "
                          "training on what survived."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.epsilon_high is not None and self.epsilon_high < self.epsilon:
            raise ValueError(f"epsilon_high ({self.epsilon_high}) must be >= epsilon ({self.epsilon}): clip-higher "
                             "widens the upper clip range. Raise epsilon_high (DAPO: 0.28) or lower epsilon (DAPO: 0.2).")
        if self.max_num_gen_batches < 0:
            raise ValueError(f"max_num_gen_batches must be >= 0 (got {self.max_num_gen_batches}): use a positive cap on "
                             "the generation rounds per batch, or 0 for no limit.")
        lmax, buffer = self.max_completion_length, self.overlong_buffer_len
        if buffer is not None and (lmax is None or not 0 < buffer < lmax):
            raise ValueError(f"overlong_buffer_len ({buffer}) must be in [1, max_completion_length - 1] "
                             f"(max_completion_length={lmax}): the soft punishment starts at max_completion_length - "
                             "overlong_buffer_len. Pick a smaller buffer (e.g. a fifth of max_completion_length) or None.")
        if not self.dynamic_sampling:
            return
        if self.scale_rewards == "batch" or self.multi_objective_aggregation == "normalize_then_sum":
            # Batch-level statistics would include the dropped groups; recomputing them is not worth a second path.
            raise ValueError("dynamic_sampling keeps TRL's group-normalised advantages of the surviving groups, which "
                             "must not depend on other groups: set scale_rewards='group' (or 'none') and "
                             "multi_objective_aggregation='sum_then_normalize', or set dynamic_sampling=False.")
        local = self.per_device_train_batch_size * self.steps_per_generation
        if local % self.num_generations != 0:
            raise ValueError(f"dynamic_sampling needs whole groups on every process: the per-process generation batch "
                             f"per_device_train_batch_size * steps_per_generation = {self.per_device_train_batch_size} "
                             f"* {self.steps_per_generation} = {local} must be divisible by num_generations "
                             f"({self.num_generations}). Change per_device_train_batch_size or steps_per_generation "
                             "(or num_generations), or set dynamic_sampling=False.")


class DAPOTrainer(PlusGRPOTrainer):
    """DAPO (https://huggingface.co/papers/2503.14476) with dynamic sampling; same arguments as `trl.GRPOTrainer`.

    Advantages stay TRL's GRPO advantages (group-normalised, so those of a kept group do not depend on the other
    groups). Logs per generation: `dapo/gen_rounds`, `dapo/groups_generated`, `dapo/groups_kept` and
    `dapo/groups_filled` (global counts). The prompt-drawing RNG is seeded with `seed + process_index`, saved in
    every checkpoint (`trl_plus_state.pt`, by the base class) and restored on resume.
    """

    _tag_names: ClassVar[list[str]] = ["trl", "trl-plus", "dapo"]
    config_class = DAPOConfig

    def __init__(self, model, reward_funcs, args: DAPOConfig | None = None, train_dataset=None, eval_dataset=None,
                 processing_class=None, reward_processing_classes=None, **kwargs):
        args = self.resolve_config(model, args)
        if args.overlong_buffer_len is not None:
            reward_funcs, reward_processing_classes, args = _with_overlong_reward(
                reward_funcs, reward_processing_classes, args)
        super().__init__(model, reward_funcs, args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, reward_processing_classes=reward_processing_classes,
                         **kwargs)
        metric = args.dynamic_sampling_metric
        if metric is not None and metric not in self.reward_func_names:
            raise ValueError(f"dynamic_sampling_metric={metric!r} is not one of the reward functions "
                             f"{self.reward_func_names}: name one of them, or None for the total reward.")
        self._metric_index = None if metric is None else self.reward_func_names.index(metric)
        if args.dynamic_sampling and isinstance(self.train_dataset, IterableDataset):
            raise ValueError("dynamic_sampling draws new prompts by index, which an IterableDataset cannot do: "
                             "pass a map-style datasets.Dataset, or set dynamic_sampling=False.")
        self._ds_generator = torch.Generator().manual_seed(args.seed + self.accelerator.process_index)

    # ----- dynamic sampling -------------------------------------------------------------------------------------

    def _generate_and_score_completions(self, inputs):
        if self.mode != "train" or not self.args.dynamic_sampling:
            return super()._generate_and_score_completions(inputs)
        G, n = self.num_generations, len(inputs)
        need = n // G  # groups this process must hand back (TRL splits n rows into steps_per_generation batches)
        kept, spare, rounds, batch, cap = [], [], 0, inputs, self.args.max_num_gen_batches
        while True:
            out = super()._generate_and_score_completions(batch)
            rounds += 1
            for g, has_spread in enumerate(self._groups_with_spread(n).tolist()):
                rows = slice(g * G, (g + 1) * G)
                if has_spread and len(kept) < need:
                    kept.append(select_rows(out, rows))
                elif not has_spread and len(spare) < need:
                    spare.append(select_rows(out, rows))
            # Every rank runs the same rounds (each round gathers across processes): go on while any rank is short.
            short_ranks = self.reduce_sum(torch.tensor(float(len(kept) < need), device=self.accelerator.device))
            if short_ranks.item() == 0 or (cap and rounds >= cap):
                break
            batch = self._draw_prompts(need, inputs[0].keys())
        fill = spare[: need - len(kept)]
        for part in fill:  # a dropped group in a missing slot contributes nothing to the loss
            part["completion_mask"] = torch.zeros_like(part["completion_mask"])
            part["advantages"] = torch.zeros_like(part["advantages"])
        counts = torch.tensor([len(kept), len(fill)], device=self.accelerator.device, dtype=torch.float32)
        n_kept, n_filled = (int(c) for c in self.reduce_sum(counts).tolist())
        if n_filled:
            self._at_cap(n_kept, need * self.accelerator.num_processes, rounds)
        result = concat_rollouts(kept + fill, self._tokenizer.pad_token_id)
        result["num_items_in_batch"] = self.reduce_sum(self.loss_mask(result).sum())
        self.log_metric("dapo/gen_rounds", rounds)
        self.log_metric("dapo/groups_generated", rounds * need * self.accelerator.num_processes)
        self.log_metric("dapo/groups_kept", n_kept)
        self.log_metric("dapo/groups_filled", n_filled)
        return result

    def _groups_with_spread(self, n_local: int) -> torch.Tensor:
        """(n_local / G,) bool: whether each local group's filter metric has a non-zero spread (NaN-aware; a group
        with fewer than two scored members has none)."""
        rpf = self._scored.rewards_per_func
        values = self.total_rewards(rpf) if self._metric_index is None else rpf[:, self._metric_index]
        v = values[self.local_rows(n_local)].view(-1, self.num_generations)
        valid = ~torch.isnan(v)
        return torch.where(valid, v, -torch.inf).amax(dim=1) > torch.where(valid, v, torch.inf).amin(dim=1)

    def _draw_prompts(self, num_prompts: int, keys) -> list[dict]:
        """`num_prompts` new training rows from the trainer's own RNG, each repeated G times side by side."""
        ds, g = self.train_dataset, self._ds_generator
        # Without replacement within a round; a prompt may come back in a later round or step (as with replacement).
        idx = (torch.randperm(len(ds), generator=g)[:num_prompts] if num_prompts <= len(ds)
               else torch.randint(len(ds), (num_prompts,), generator=g))
        rows = [ds[int(i)] for i in idx]
        if self.args.remove_unused_columns:  # match the columns the dataloader hands over
            rows = [{k: r[k] for k in keys if k in r} for r in rows]
        return [dict(r) for r in rows for _ in range(self.num_generations)]

    def _at_cap(self, n_kept: int, n_needed: int, rounds: int) -> None:
        metric = self.args.dynamic_sampling_metric or "the total reward"
        message = (f"DAPO dynamic sampling hit max_num_gen_batches={rounds}: only {n_kept} of the {n_needed} groups "
                   f"needed have a non-zero spread in {metric}. ")
        if self.args.dynamic_sampling_strict:
            raise RuntimeError(message + "Raise max_num_gen_batches (0 = no limit), use a reward that tells the "
                               "completions of a prompt apart, or set dynamic_sampling_strict=False to train on "
                               "what survived.")
        if self.accelerator.is_main_process:
            warnings.warn(message + f"Training on them; the other {n_needed - n_kept} slots hold dropped groups with "
                          "zero loss mask and advantage. Raise max_num_gen_batches to avoid this.", stacklevel=3)

    # ----- state of the prompt-drawing RNG (saved with checkpoints by the base class) ---------------------------

    def dynamic_sampling_state(self) -> dict:
        """The state of this process's prompt-drawing RNG."""
        return {"generator": self._ds_generator.get_state()}

    def load_dynamic_sampling_state(self, state: dict) -> None:
        self._ds_generator.set_state(state["generator"])

    checkpoint_state = dynamic_sampling_state  # saved with every checkpoint by the base class
    load_checkpoint_state = load_dynamic_sampling_state


def _with_overlong_reward(reward_funcs, reward_processing_classes, args: DAPOConfig):
    """Append TRL's soft overlong punishment (weight 1) to the reward functions, their processing classes and
    weights. `args` is copied when its weights change, so the caller's config can be reused."""
    funcs = [] if reward_funcs is None else list(reward_funcs) if isinstance(reward_funcs, list) else [reward_funcs]
    n = len(funcs)
    funcs.append(get_soft_overlong_punishment(max_completion_len=args.max_completion_length,
                                              soft_punish_cache=args.overlong_buffer_len))
    if reward_processing_classes is not None:
        rpc = reward_processing_classes
        reward_processing_classes = [*(rpc if isinstance(rpc, list) else [rpc]), None]  # a plain function: None
    if args.reward_weights is not None:
        if len(args.reward_weights) != n:
            raise ValueError(f"reward_weights has {len(args.reward_weights)} values for {n} reward functions: give "
                             "one per reward function you pass (the overlong punishment gets weight 1 on its own).")
        args = copy.copy(args)
        args.reward_weights = [*args.reward_weights, 1.0]
    return funcs, reward_processing_classes, args
