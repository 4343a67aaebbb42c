"""Dr. GRPO: a validated preset of TRL's own flags."""

import re

import pytest
import torch
from trl import GRPOConfig

from trl_plus import DrGRPOConfig, DrGRPOTrainer
from trl_plus.core import dr_grpo_advantages

TEXTS = ["7", "77", "a7", "777b", "x", "77777", "", "7y7"]


def sevens(completions, **kwargs):
    return [float(c.count("7")) for c in completions]


def test_defaults_are_dr_grpo(fast_args):
    args = DrGRPOConfig(**fast_args())
    assert (args.scale_rewards, args.loss_type) == ("none", "dr_grpo")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"scale_rewards": "group"}, "scale_rewards='group'"),
        ({"scale_rewards": "batch"}, "scale_rewards='batch'"),
        ({"loss_type": "grpo"}, "loss_type='grpo'"),
        ({"loss_type": "dapo"}, "loss_type='dapo'"),
    ],
    ids=["group-std", "batch-std", "grpo-loss", "dapo-loss"],
)
def test_contradicting_values_are_rejected(fast_args, overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        DrGRPOConfig(**fast_args(**overrides))


def test_plain_grpo_config_is_rejected(tiny_model_dir, addition_dataset, fast_args):
    with pytest.raises(TypeError, match="needs a DrGRPOConfig"):
        DrGRPOTrainer(tiny_model_dir, sevens, args=GRPOConfig(**fast_args()), train_dataset=addition_dataset())


def test_advantages_through_the_seam_equal_the_core(tiny_model_dir, addition_dataset, fast_args, pin):
    trainer = DrGRPOTrainer(tiny_model_dir, sevens, args=DrGRPOConfig(**fast_args(per_device_train_batch_size=8)),
                            train_dataset=addition_dataset())
    pin(trainer, TEXTS)
    trainer.model.train()
    out = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    rewards = torch.tensor([float(t.count("7")) for t in TEXTS])
    # group 1: [1, 2, 1, 3] - 1.75; group 2: [0, 5, 0, 2] - 1.75
    expected = torch.tensor([-0.75, 0.25, -0.75, 1.25, -1.75, 3.25, -1.75, 0.25])
    torch.testing.assert_close(dr_grpo_advantages(rewards, torch.arange(8) // 4), expected)
    torch.testing.assert_close(out["advantages"], expected)
