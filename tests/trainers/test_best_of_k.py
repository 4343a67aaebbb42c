"""RAFT's best-of-K NLL is the model's own NLL, whatever the sampling temperature."""

import pytest

from tests.conftest import completion_logps
from trl_plus import RAHFConfig, RAHFTrainer

TEXTS = ["77", "7", "777x", "777"]  # best: "777" (row 3)


def sevens(completions, **kwargs):
    return [float(c.count("7")) for c in completions]


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_nll_is_at_temperature_one(tiny_model_dir, addition_dataset, fast_args, pin, temperature):
    args = RAHFConfig(**fast_args(temperature=temperature))
    trainer = RAHFTrainer(model=tiny_model_dir, reward_funcs=sevens, args=args, train_dataset=addition_dataset())
    pin(trainer, TEXTS)
    trainer.model.train()
    out = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    assert out["advantages"].tolist() == [0.0, 0.0, 0.0, 1.0]
    trainer.current_gradient_accumulation_steps = 1  # set by train(); one micro-batch here
    loss = trainer._compute_loss(trainer.model, out)
    mask = out["completion_mask"][3].bool()
    expected = -completion_logps(trainer.model, out)[3][mask].mean()  # the model's own log-probs, no scaling
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
