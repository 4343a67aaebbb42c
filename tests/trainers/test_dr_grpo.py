"""Dr. GRPO: a validated preset of TRL's own flags."""

import re

import peft
import pytest
import torch
from trl import GRPOConfig

from tests.conftest import changed, frozen_snapshot, trainable_snapshot
from trl_plus import DrGRPOConfig, DrGRPOTrainer
from trl_plus.core import dr_grpo_advantages

TEXTS = ["7", "77", "a7", "777b", "x", "77777", "", "7y7"]


def sevens(completions, **kwargs):
    return [float(c.count("7")) for c in completions]


def variety(completions, **kwargs):
    return [float(len(set(c))) for c in completions]


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


@pytest.mark.e2e
def test_training_changes_parameters_lora_keeps_base(tiny_model_dir, addition_dataset, fast_args):
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = DrGRPOTrainer(tiny_model_dir, variety, args=DrGRPOConfig(**fast_args()),
                            train_dataset=addition_dataset(), peft_config=lora)
    base, adapters = frozen_snapshot(trainer.model), trainable_snapshot(trainer.model)
    trainer.train()
    assert not changed(base, trainer.model) and changed(adapters, trainer.model)
    assert {"reward", "loss", "frac_reward_zero_std"} <= {k for row in trainer.state.log_history for k in row}


@pytest.mark.e2e
def test_constant_rewards_leave_parameters_unchanged(tiny_model_dir, addition_dataset, fast_args):
    trainer = DrGRPOTrainer(tiny_model_dir, lambda completions, **kw: [2.0] * len(completions),
                            args=DrGRPOConfig(**fast_args()), train_dataset=addition_dataset())
    before = trainable_snapshot(trainer.model)
    trainer.train()
    assert not changed(before, trainer.model)
    assert all(row["loss"] == 0.0 for row in trainer.state.log_history if "loss" in row)


@pytest.mark.e2e
def test_dr_grpo_learns_to_emit_sevens(tiny_model_dir, addition_dataset, fast_args):
    def share_of_sevens(completions, **kwargs):
        return [c.count("7") / max(len(c), 1) for c in completions]

    args = DrGRPOConfig(**fast_args(max_steps=12, per_device_train_batch_size=16, learning_rate=3e-2))
    trainer = DrGRPOTrainer(tiny_model_dir, share_of_sevens, args=args, train_dataset=addition_dataset(64))
    trainer.train()
    rewards = [row["reward"] for row in trainer.state.log_history if "reward" in row]
    first, last = sum(rewards[:2]) / 2, sum(rewards[-3:]) / 3
    assert first < 0.15 and last > first + 0.5, rewards
