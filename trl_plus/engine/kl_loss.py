"""The KL term of the loss with any KL estimator (`kl_in_loss_estimator`), aggregated as TRL aggregates its loss.

TRL's `_compute_loss` adds `beta * k3` to the per-token loss before aggregating it, so the KL term follows
`loss_type`. trl-plus lets the estimator be k1, k2, k3 or abs (Schulman 2020, http://joschu.net/blog/kl-approx.html;
REINFORCE++-baseline recommends k2, https://huggingface.co/papers/2501.03262): the loss runs with `beta = 0`, and
`beta * KL` of the log-probs of TRL's own forward is added, aggregated by the same rule, so switching the estimator
changes the per-token values only, never their weighting.
"""

from __future__ import annotations

import torch

from trl_plus.core import aggregate_loss, kl_penalty

# loss_type -> how TRL 1.16 aggregates a (B, T) per-token loss (see `aggregate_like_loss`)
SUPPORTED_LOSS_TYPES = ("grpo", "sapo", "bnpo", "dr_grpo", "dapo", "cispo", "vespo", "luspo")


def aggregate_like_loss(trainer, per_token: torch.Tensor, mask: torch.Tensor, inputs: dict) -> torch.Tensor:
    """Reduce `per_token` (B, T) to a scalar exactly as TRL 1.16 reduces its per-token loss for `trainer.loss_type`,
    including the gradient-accumulation scaling. Padding is excluded with `where` (a padding value may be inf)."""
    loss_type = trainer.loss_type
    train = trainer.model.training
    accumulation = trainer.current_gradient_accumulation_steps if train else 1
    if loss_type in ("grpo", "sapo"):
        return aggregate_loss(per_token, mask, "grpo") / accumulation
    if loss_type == "bnpo":
        return aggregate_loss(per_token, mask, "dapo") / accumulation
    if loss_type == "dr_grpo":
        length = trainer.max_completion_length
        return aggregate_loss(per_token, mask, "dr_grpo", max_completion_length=length) / accumulation
    if loss_type in ("dapo", "cispo", "vespo"):
        normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / trainer.accelerator.num_processes
        if train:  # `num_items_in_batch` spans the generation batch: rescale it to one accumulation window
            normalizer = normalizer * accumulation / trainer.args.steps_per_generation
        return aggregate_loss(per_token, mask, "dapo", num_items_in_batch=normalizer)
    if loss_type == "luspo":
        return torch.where(mask.bool(), per_token, 0.0).sum(-1).mean() / accumulation
    raise ValueError(f"kl_in_loss_estimator other than 'k3' does not support loss_type={loss_type!r}: use one of "
                     f"{SUPPORTED_LOSS_TYPES}, or kl_in_loss_estimator='k3' (TRL's own KL term).")


def loss_with_kl(trainer, compute_loss, model, inputs, estimator: str) -> torch.Tensor:
    """`compute_loss(model, inputs)` (TRL's loss) with its k3 KL term replaced by `estimator`'s.

    TRL's loss runs with `beta = 0`; the log-probs of its forward are taken from `_get_per_token_logps_and_entropies`
    on the way, so no second forward is needed.
    """
    seen = {}
    forward = trainer._get_per_token_logps_and_entropies

    def spy(*args, **kwargs):
        result = forward(*args, **kwargs)
        seen["logps"] = result[0]
        return result

    beta, trainer.beta = trainer.beta, 0.0
    trainer._get_per_token_logps_and_entropies = spy
    try:
        loss = compute_loss(model, inputs)
    finally:
        trainer.beta = beta
        del trainer._get_per_token_logps_and_entropies
    mask = trainer.loss_mask(inputs)
    kl = kl_penalty(seen["logps"], inputs["ref_per_token_logps"], estimator)
    valid = mask.bool()
    totals = trainer.reduce_sum(torch.stack([torch.where(valid, kl, 0.0).sum(), valid.sum().to(kl.dtype)]).detach())
    trainer.log_metric("kl", (totals[0] / totals[1].clamp(min=1)).item())
    return loss + beta * aggregate_like_loss(trainer, kl, mask, inputs)
