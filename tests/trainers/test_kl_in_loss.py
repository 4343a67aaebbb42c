"""The KL term of the loss with a chosen estimator is aggregated exactly like TRL's loss for each loss_type."""

import pytest
import torch

from tests.conftest import completion_logps
from trl_plus import ReinforcePlusPlusConfig, ReinforcePlusPlusTrainer, core

TEXTS = ["7", "77 77 7", "a", "7 7"]  # different lengths: per-sequence and per-token weightings differ
BETA = 0.5


def sevens(completions, **kwargs):
    return [float(c.count("7")) for c in completions]


@pytest.mark.parametrize(("loss_type", "estimator"), [("grpo", "k2"), ("dapo", "k2"), ("dr_grpo", "k1"),
                                                      ("bnpo", "abs"), ("dapo", "abs")])
def test_kl_term_follows_loss_type(tiny_model_dir, addition_dataset, fast_args, pin, loss_type, estimator):
    args = ReinforcePlusPlusConfig(**fast_args(beta=BETA, loss_type=loss_type, loss_kl_estimator=estimator,
                                               kl_coef=0.0, learning_rate=0.0))
    trainer = ReinforcePlusPlusTrainer(model=tiny_model_dir, reward_funcs=sevens, args=args,
                                       train_dataset=addition_dataset())
    pin(trainer, TEXTS)
    trainer.model.train()
    out = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    # The reference is the policy at step 0; move the policy so the KL is not 0.
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    trainer.current_gradient_accumulation_steps = 1  # set by train(); one micro-batch here
    loss = trainer._compute_loss(trainer.model, out)
    trainer.beta = 0.0
    policy_loss = trainer._compute_loss(trainer.model, out)
    trainer.beta = BETA
    mask = out["completion_mask"]
    kl = core.kl_penalty(completion_logps(trainer.model, out), out["ref_per_token_logps"], estimator)
    mode = {"bnpo": "dapo"}.get(loss_type, loss_type)
    expected = core.aggregate_loss(kl, mask, mode, max_completion_length=args.max_completion_length)
    assert (loss - policy_loss).item() == pytest.approx(BETA * expected.item(), rel=1e-4, abs=1e-7)
    assert abs(expected.item()) > 1e-4
