"""Best-of-K selection and the NLL loss of RAFT (Dong et al. 2023, https://huggingface.co/papers/2304.06767).

Every prompt is sampled K = num_generations times; the estimator `raft` keeps the best (`select`) and marks them
with advantage 1.0 (0.0 for the rest); `nll_loss` trains the kept completions with the negative log-likelihood of
their tokens. Nothing is trained on the rejected samples; there is no reference model.

Selection, over the rewards of every process (so it is global):
- `selection="best_per_prompt"`: the best completion of each prompt;
- `selection="top_fraction"`: the best `floor(keep_fraction * N)` (at least 1) of the whole batch of N.
Ties go to the shorter completion (in trained tokens), then to the first. With `min_reward`, a completion is kept
only if its reward is >= `min_reward`. An unscorable completion (NaN reward) is never kept, nor one without a token
to train on (e.g. masked by `mask_truncated_completions`).
"""

from __future__ import annotations

import math

import torch

SELECTIONS = ("best_per_prompt", "top_fraction")

# Inputs that a multimodal batch carries per image or tile rather than per row; with any of them the loss runs on
# every row (weighted 0/1) instead of indexing the kept rows.
_MULTIMODAL_KEYS = ("pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes",
                    "num_tiles", "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids")


def select(rewards: torch.Tensor, lengths: torch.Tensor, group_ids: torch.Tensor, args) -> torch.Tensor:
    """(N,) bool: which completions of the gathered batch are kept (see the module docstring)."""
    r, n_tokens, groups = rewards.tolist(), lengths.tolist(), group_ids.tolist()
    candidates = (i for i in range(len(r)) if not math.isnan(r[i]) and n_tokens[i] > 0)
    order = sorted(candidates, key=lambda i: (-r[i], n_tokens[i], i))
    if args.min_reward is not None:
        order = [i for i in order if r[i] >= args.min_reward]
    if args.selection == "top_fraction":
        group_size = len(r) // max(len(set(groups)), 1)
        fraction = args.keep_fraction or 1.0 / group_size
        chosen = order[: max(1, math.floor(fraction * len(r) + 1e-6))]
    else:
        seen, chosen = set(), []
        for i in order:
            if groups[i] not in seen:
                seen.add(groups[i])
                chosen.append(i)
    kept = torch.zeros(len(r), dtype=torch.bool, device=rewards.device)
    kept[chosen] = True
    return kept


def kept_tokens(trainer, out) -> torch.Tensor:
    """The NLL normaliser: the number of kept completion tokens of the whole generation batch (all processes)."""
    mask = trainer.loss_mask(out)
    return trainer.reduce_sum((mask.sum(1) * out["advantages"]).sum().to(torch.float32))


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


def nll_loss(trainer, model, inputs) -> torch.Tensor:
    """Sum of the kept tokens' NLL divided by the kept-token count, scaled exactly as TRL scales its `dapo`
    normaliser (per process, per accumulation window of `steps_per_generation` micro-batches), so the loss value is
    the mean NLL of the kept tokens and accumulation gives the same update. MoE router aux losses are not added."""
    kept = inputs["advantages"]  # (B,) 1.0 kept / 0.0 rejected
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
    weights = (trainer.loss_mask(inputs) * kept[:, None])[rows]
    nll = -torch.where(weights.bool(), logps, 0.0).sum()  # `where`: a padding log-prob may be -inf
    normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / trainer.accelerator.num_processes
    if trainer.model.training:
        normalizer = normalizer * trainer.current_gradient_accumulation_steps / trainer.args.steps_per_generation
    return nll / normalizer
