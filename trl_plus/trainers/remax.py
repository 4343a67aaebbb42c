"""ReMax on TRL's GRPOTrainer (Li et al. 2023, https://huggingface.co/papers/2310.10505).

ReMax is REINFORCE with a greedy baseline: for every unique prompt the current policy also
decodes one *greedy* completion (`do_sample=False`, same `max_completion_length`), the same
reward functions score it, and each sampled completion's advantage is `R[b, t] - r_greedy`, with
`R` the returns-to-go of the outcome at the last token (minus an optional per-token KL penalty,
`kl_coef`/`kl_estimator`). The greedy completions are only a baseline: never trained on.

Overrides (no TRL method body is copied):
- `compute_advantages` (the seam of `PlusGRPOTrainer`): TRL has no hook for a second, greedy
  rollout, so it is run here, after TRL has generated and scored the sampled batch. It goes
  through TRL's own `_generate` (tokenisation, chat template, `_generate_single_turn`, decoding,
  tools) with `self.generation_config` swapped for a greedy copy, and through TRL's own
  `_calculate_rewards`. Side effects that belong to the sampled batch only (completion-length
  metrics, `num_input_tokens_seen`, reward functions' pending logs, `self._scored`) are put back.
  The advantages come from `trl_plus.core` (`token_level_rewards` + `remax_advantages`).
- Nothing else: the loss is TRL's (with `num_iterations=1` and on-policy data the importance
  ratio is 1 and the gradient is plain REINFORCE, ReMax's loss; aggregation follows `loss_type`).

Minimum `num_generations` is 2: TRL's `GRPOConfig` rejects 1, and allowing it would mean fighting
TRL's batch checks. The paper's setting is one sample per prompt; G=2 is the closest TRL allows.
Greedy decoding through vLLM (`use_vllm=True`) or a custom `rollout_func` is not implemented.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from trl import GRPOConfig

from trl_plus.core import KL_ESTIMATORS, kl_penalty, remax_advantages, token_level_rewards
from trl_plus.trainers.base import PlusGRPOTrainer


@dataclass
class ReMaxConfig(GRPOConfig):
    """Configuration of `ReMaxTrainer`: `GRPOConfig` plus ReMax's optional KL penalty in the reward.

    `num_generations` must be >= 2 (TRL's minimum; the paper samples once per prompt).
    """

    kl_coef: float = field(
        default=0.0,
        metadata={"help": "Coefficient of the per-token KL penalty (policy vs reference) subtracted from the reward; "
                          "0 (default) disables it and no reference model is loaded."},
    )
    kl_estimator: str = field(
        default="k1",
        metadata={"help": "KL estimator of the reward penalty: 'k1', 'k2', 'k3' or 'abs' (Schulman 2020)."},
    )

    def __post_init__(self):
        if self.num_generations is not None and self.num_generations < 2:
            raise ValueError(
                f"ReMaxConfig got num_generations={self.num_generations}, but TRL's GRPOConfig needs at least 2 "
                "samples per prompt: set num_generations=2 (the closest to the paper's one sample per prompt)."
            )
        super().__post_init__()
        if self.use_vllm:
            raise NotImplementedError(
                "ReMaxTrainer's greedy baseline rollout runs through transformers' generate; greedy decoding with "
                "vLLM is not implemented. Set use_vllm=False."
            )
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"kl_estimator={self.kl_estimator!r} is not a KL estimator: use one of {KL_ESTIMATORS}.")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0 (got {self.kl_coef}); use 0 to switch the KL penalty off.")


class ReMaxTrainer(PlusGRPOTrainer):
    """ReMax (https://huggingface.co/papers/2310.10505): REINFORCE with the reward of the policy's greedy
    completion as the baseline, `A[b, t] = R[b, t] - r_greedy[prompt(b)]`, no whitening.

    Takes the same arguments as `trl.GRPOTrainer`. Logs `remax/greedy_reward` (mean reward of the greedy
    completions), `remax/advantage_mean` (mean advantage over the valid tokens of the batch) and, with
    `kl_coef > 0`, `remax/kl_reward` (mean per-token KL estimate that the penalty multiplies).
    """

    _tag_names: ClassVar[list[str]] = ["trl", "trl-plus", "remax"]
    config_class = ReMaxConfig

    def __init__(self, model, reward_funcs, args: ReMaxConfig | None = None, *more, **kwargs):
        args = self.resolve_config(model, args)
        if kwargs.get("rollout_func") is not None:
            raise NotImplementedError("ReMaxTrainer cannot decode greedily through a custom rollout_func; "
                                      "remove rollout_func.")
        super().__init__(model, reward_funcs, args, *more, **kwargs)

    # ----- the greedy baseline ------------------------------------------------------------------

    @staticmethod
    def greedy_plan(num_processes: int, n_local: int, group_size: int) -> list[list[int]]:
        """For each process, the groups (prompts) among its rows, in order. A group can span processes."""
        return [sorted({i // group_size for i in range(p * n_local, (p + 1) * n_local)}) for p in range(num_processes)]

    @staticmethod
    def baseline_per_group(greedy_rewards: torch.Tensor, plan: list[list[int]], num_groups: int) -> torch.Tensor:
        """(num_groups,) greedy reward of each group from the gathered (P * width,) rewards of the greedy rollout.

        Process `p` scored its groups `plan[p]` in slots `p * width + j` (padded to `width`); a group that spans
        processes was decoded by each of them, and the first copy counts.
        """
        width = max(map(len, plan))
        baseline = torch.full((num_groups,), torch.nan, dtype=greedy_rewards.dtype, device=greedy_rewards.device)
        done = [False] * num_groups
        for p, groups in enumerate(plan):
            for j, g in enumerate(groups):
                if not done[g]:
                    baseline[g], done[g] = greedy_rewards[p * width + j], True
        return baseline

    @contextlib.contextmanager
    def _greedy_rollout(self):
        """Swap in a greedy generation config and eval mode; undo the rollout's side effects on the sampled batch's
        logs and restore the model's mode.

        Eval mode makes the baseline the deterministic greedy completion: in train mode, dropout would make it a
        random one and draw from the global RNG. TRL logs generation metrics under the current mode, so both
        modes' metrics are put back.
        """
        sampling = self.generation_config
        greedy = copy.deepcopy(sampling)
        greedy.do_sample = False
        greedy.temperature = greedy.top_p = greedy.top_k = greedy.min_p = None  # sampling-only knobs
        saved = {mode: {k: list(v) for k, v in metrics.items()} for mode, metrics in self._metrics.items()}
        tokens_seen = self.state.num_input_tokens_seen
        training = self.model.training
        self.generation_config = greedy
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(training)
            self.generation_config = sampling
            for mode, metrics in self._metrics.items():
                metrics.clear()
                metrics.update(saved[mode])
            self.state.num_input_tokens_seen = tokens_seen
            self._pending_extra_logs.clear()
            self._pending_metrics.clear()

    def greedy_baseline(self, n_local: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode and score one greedy completion per prompt of this process's rows.

        Returns `(r_greedy_local, greedy_per_group)`: the (B,) baseline of each local row, and the greedy reward
        of every prompt of the global batch. Every process decodes the same number of prompts (the largest count
        over processes, padded with repeats), because `_calculate_rewards` gathers across processes.
        """
        scored = self._scored
        rank, size, G = self.accelerator.process_index, self.accelerator.num_processes, self.group_size
        plan = self.greedy_plan(size, n_local, G)
        first_row = {}
        for i in range(n_local):
            first_row.setdefault((rank * n_local + i) // G, i)
        rows = [first_row[g] for g in plan[rank]]
        rows += rows[-1:] * (max(map(len, plan)) - len(rows))
        prompts = [scored.prompts[i] for i in rows]
        inputs = [scored.inputs[i] for i in rows]
        with self._greedy_rollout():
            _, completion_ids, _, completions, *_ = self._generate(prompts)
            rewards_per_func = self._calculate_rewards(inputs, prompts, completions, completion_ids)
        self._scored = scored  # the base class keeps what was scored last: keep the sampled batch's
        greedy = self.baseline_per_group(self.total_rewards(rewards_per_func), plan, size * n_local // G)
        local_groups = self.group_ids(size * n_local)[self.local_rows(n_local)]
        return greedy[local_groups], greedy

    # ----- the seam -------------------------------------------------------------------------------

    def compute_advantages(self, out):
        mask = self.loss_mask(out)
        n_local = mask.size(0)
        rewards = self.total_rewards()[self.local_rows(n_local)]  # sampled batch, before the greedy scoring
        r_greedy, greedy_all = self.greedy_baseline(n_local)

        kl = None
        if self.args.kl_coef > 0:
            logp_old, logp_ref = self.rollout_logps(out)
            kl = kl_penalty(logp_old, logp_ref, self.args.kl_estimator)
            kl_totals = self.reduce_sum(torch.stack([(kl * mask).sum(), mask.sum().to(kl.dtype)]))
            self.log_metric("remax/kl_reward", (kl_totals[0] / kl_totals[1].clamp(min=1)).item())
        token_rewards = token_level_rewards(rewards, mask, kl=kl, kl_coef=self.args.kl_coef)
        advantages = remax_advantages(token_rewards, r_greedy, mask)
        # An unscorable sampled completion carries no signal (token_level_rewards already zeroed its outcome).
        advantages = torch.where(torch.isnan(rewards)[:, None], 0.0, advantages)

        self.log_metric("remax/greedy_reward", torch.nanmean(greedy_all).item())
        valid = mask.bool()
        totals = self.reduce_sum(torch.stack([(advantages * valid).sum(), valid.sum().to(advantages.dtype)]))
        self.log_metric("remax/advantage_mean", (totals[0] / totals[1].clamp(min=1)).item())
        return advantages
