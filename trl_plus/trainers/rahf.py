"""RAHF: reward-ranked fine-tuning (the RAFT method of Dong et al. 2023,
https://huggingface.co/papers/2304.06767) on TRL's GRPOTrainer.

Online loop on the trainer's own generation: every prompt is sampled `K = num_generations` times
(TRL's sampler and temperature), the reward functions score the samples, the best are *kept*, and
the policy is trained on the kept completions with the SFT loss (negative log-likelihood of the
completion tokens). Nothing is trained on the rejected samples, and there is no reference model.

Selection (over the rewards TRL gathered from every process, so it is global):
- `selection="best_per_prompt"` (default): the best completion of each prompt;
- `selection="top_fraction"`: the best `floor(keep_fraction * N)` (at least 1) of the whole batch of `N`.
Ties go to the shorter completion (counted in trained tokens), then to the first. With `min_reward`, a
completion is kept only if its reward is >= `min_reward`. An unscorable completion (every reward
function returned None: NaN) is never kept, nor one without a token to train on (e.g. masked by
`mask_truncated_completions`). Constant rewards are all ties, so each prompt keeps its
shortest completion and training goes on (SFT towards shorter answers); nothing becomes NaN.

Overrides (no TRL method body is copied):
- `compute_advantages` (the seam of `PlusGRPOTrainer`): selects the kept completions and carries
  kept-ness in `out["advantages"]` as a (B,) float, 1.0 kept / 0.0 rejected (TRL's completion table is
  filled before the hook and still shows GRPO's advantages). It also replaces `out["num_items_in_batch"]`
  by the number of kept completion tokens of the whole generation batch (all processes): the SFT normaliser.
  MoE router aux losses are not added.
- `_compute_loss`: TRL has no SFT loss, so this is a new loss, not a variant of TRL's: per-token
  log-probs at temperature 1 (the model's own NLL, not that of TRL's temperature-scaled fused head) on the
  kept rows only, summed and
  divided by the kept-token count scaled exactly as TRL scales its `dapo` normaliser (per process, per
  accumulation window of `steps_per_generation` micro-batches), so the loss value *is* the mean NLL of
  the kept tokens and gradient accumulation / `steps_per_generation` give the same update. GRPO loss
  options (`loss_type`, `epsilon*`, importance sampling, entropy masks or bonus) do not apply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from trl import GRPOConfig

from trl_plus.trainers.base import PlusGRPOTrainer

SELECTIONS = ("best_per_prompt", "top_fraction")

# Inputs that a multimodal batch carries per image or tile rather than per row; with any of them the loss
# runs on every row (weighted 0/1) instead of indexing the kept rows.
_MULTIMODAL_KEYS = ("pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes",
                    "num_tiles", "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids")


@dataclass
class RAHFConfig(GRPOConfig):
    """Configuration of `RAHFTrainer`: `GRPOConfig` plus the selection rule. `num_generations` is K."""

    selection: str = field(
        default="best_per_prompt",
        metadata={"help": "Which samples to train on: 'best_per_prompt' (the best of each prompt's K samples) or "
                          "'top_fraction' (the best `keep_fraction` of the whole generation batch)."},
    )
    keep_fraction: float | None = field(
        default=None,
        metadata={"help": "With selection='top_fraction': fraction of the generation batch to keep, in (0, 1]. "
                          "None keeps 1 / num_generations (as many as 'best_per_prompt')."},
    )
    min_reward: float | None = field(
        default=None,
        metadata={"help": "Keep a selected completion only if its reward is >= min_reward; None: no threshold."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection={self.selection!r} is unknown: use one of {SELECTIONS}.")
        if self.keep_fraction is not None and not 0.0 < self.keep_fraction <= 1.0:
            raise ValueError(f"keep_fraction must be in (0, 1] (got {self.keep_fraction}): e.g. keep_fraction=0.25 "
                             "keeps the best quarter of the batch, or None for 1 / num_generations.")
        if self.keep_fraction is not None and self.selection != "top_fraction":
            raise ValueError(f"keep_fraction={self.keep_fraction} only applies to selection='top_fraction': set "
                             "selection='top_fraction' or leave keep_fraction=None.")
        if self.beta != 0.0:
            raise ValueError(f"RAHFConfig got beta={self.beta}, but RAHF trains with the SFT loss and has no "
                             "reference model or KL term: set beta=0.0.")


class RAHFTrainer(PlusGRPOTrainer):
    """Reward-ranked fine-tuning (RAFT, https://huggingface.co/papers/2304.06767): sample K completions per
    prompt, keep the best, train on them with the negative log-likelihood.

    Takes the same arguments as `trl.GRPOTrainer`. Logs `rahf/kept_fraction`, `rahf/reward_kept_mean`,
    `rahf/reward_all_mean`; the logged `loss` is the mean NLL per kept token.
    """

    _tag_names: ClassVar[list[str]] = ["trl", "trl-plus", "rahf", "raft"]
    config_class = RAHFConfig

    # ----- selection ------------------------------------------------------------------------------

    def select(self, rewards: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(N,) bool: which completions of the global batch are kept (see the module docstring)."""
        r, n_tokens = rewards.tolist(), lengths.tolist()
        # Best first: highest reward, then the shorter completion, then the first. Never a candidate: an unscorable
        # completion (NaN), or one with no token to train on (e.g. masked by `mask_truncated_completions`).
        candidates = (i for i in range(len(r)) if not math.isnan(r[i]) and n_tokens[i] > 0)
        order = sorted(candidates, key=lambda i: (-r[i], n_tokens[i], i))
        if self.args.min_reward is not None:
            order = [i for i in order if r[i] >= self.args.min_reward]
        if self.args.selection == "top_fraction":
            fraction = self.args.keep_fraction or 1.0 / self.group_size
            chosen = order[: max(1, math.floor(fraction * len(r) + 1e-6))]
        else:
            seen, chosen = set(), []
            for i in order:
                if i // self.group_size not in seen:
                    seen.add(i // self.group_size)
                    chosen.append(i)
        kept = torch.zeros(len(r), dtype=torch.bool, device=rewards.device)
        kept[chosen] = True
        return kept

    # ----- the seam -------------------------------------------------------------------------------

    def compute_advantages(self, out):
        mask = self.loss_mask(out)
        rewards = self.total_rewards()  # (N,) all processes
        lengths = self.accelerator.gather(mask.sum(1))  # (N,) trained tokens per completion
        kept = self.select(rewards, lengths)
        out["num_items_in_batch"] = (lengths * kept).sum().to(torch.float32)  # the SFT normaliser (global)

        self.log_metric("rahf/kept_fraction", kept.float().mean().item())
        self.log_metric("rahf/reward_kept_mean", rewards[kept].mean().item() if kept.any() else math.nan)
        self.log_metric("rahf/reward_all_mean", torch.nanmean(rewards).item())
        return kept[self.local_rows(mask.size(0))].float()

    def _compute_loss(self, model, inputs):
        kept = inputs["advantages"]  # (B,) 1.0 kept / 0.0 rejected, from compute_advantages
        multimodal = {k: inputs[k] for k in _MULTIMODAL_KEYS if inputs.get(k) is not None}
        if multimodal:
            rows = torch.arange(kept.size(0), device=kept.device)
        else:  # only the kept rows need a forward; one (weighted 0) when none, so every process runs the model
            rows = kept.nonzero().squeeze(1)
            if rows.numel() == 0:
                rows = rows.new_zeros(1)
        completion_ids = inputs["completion_ids"][rows]
        input_ids = torch.cat([inputs["prompt_ids"][rows], completion_ids], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"][rows], inputs["completion_mask"][rows]], dim=1)
        logps = model_logps(model, input_ids, attention_mask, completion_ids, multimodal)
        weights = (self.loss_mask(inputs) * kept[:, None])[rows]
        nll = -torch.where(weights.bool(), logps, 0.0).sum()  # `where`: a padding log-prob may be -inf

        # TRL's `dapo` normaliser: the global count, per process, per accumulation window. Summed over the
        # `steps_per_generation` micro-batches and averaged over processes, the loss is sum(NLL) / count.
        normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
        if self.mode == "train":
            normalizer = normalizer * self.current_gradient_accumulation_steps / self.args.steps_per_generation
        return nll / normalizer


def model_logps(model, input_ids, attention_mask, completion_ids, multimodal) -> torch.Tensor:
    """(B, T) log-probs of the completion tokens under the model's own distribution (temperature 1).

    TRL's `_get_per_token_logps_and_entropies` runs the fused LM head that TRL built with the sampling
    `temperature`, which is right for the policy-gradient ratio but would make this SFT loss the NLL of
    `logits / temperature`. The model's unpatched forward (`fused_lm_head=False`) gives its own logits.
    """
    n = completion_ids.size(1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=n + 1, **multimodal).logits
    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return logps.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)


# The method's name in the paper (Dong et al. 2023): RAFT.
RAFTConfig = RAHFConfig
RAFTTrainer = RAHFTrainer
