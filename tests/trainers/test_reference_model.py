"""The reference policy is the policy as passed to the trainer, also when it was changed in memory after loading
(SFT then RL in one script), not the checkpoint its `name_or_path` points at."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from trl_plus import (
    PlusGRPOConfig,
    PlusGRPOTrainer,
    PPOConfig,
    PPOTrainer,
    ReinforcePlusPlusConfig,
    ReinforcePlusPlusTrainer,
)


def sevens(completions, **kwargs):
    return [float(c.count("7")) for c in completions]


def _moved_model(tiny_model_dir):
    """The saved tiny model, then changed in memory (as SFT would): its name_or_path still names the old weights."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


CASES = [
    ("reinforce_pp", ReinforcePlusPlusConfig, ReinforcePlusPlusTrainer, {"kl_coef": 0.01}),
    ("ppo", PPOConfig, PPOTrainer, {"kl_coef": 0.01}),
    ("grpo_beta", PlusGRPOConfig, PlusGRPOTrainer, {"beta": 0.04}),
]


@pytest.mark.parametrize("name,config_cls,trainer_cls,extra", CASES, ids=[c[0] for c in CASES])
def test_reference_equals_the_policy_object_passed(tiny_model_dir, addition_dataset, fast_args, pin, name,
                                                   config_cls, trainer_cls, extra):
    torch.manual_seed(0)
    model = _moved_model(tiny_model_dir)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    args = config_cls(**fast_args(per_device_train_batch_size=8, num_generations=4, **extra))
    trainer = trainer_cls(model=model, reward_funcs=sevens, args=args, train_dataset=addition_dataset())
    ref = trainer.ref_model.state_dict()
    assert ref.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(ref[key].float(), value.float(), msg=key)
    # The KL of the first rollout is that of a policy against itself: 0 (TRL's loaded reference gives ~1e-1 here).
    pin(trainer, ["7", "77", "a7", "777b", "x", "77777", "", "7y7"])
    trainer.model.train()
    out = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
    policy_logps = out.get("old_per_token_logps")
    if policy_logps is None:
        from tests.conftest import completion_logps

        policy_logps = completion_logps(trainer.model, out)
    mask = out["completion_mask"].bool()
    assert (out["ref_per_token_logps"] - policy_logps)[mask].abs().max() < 1e-4


def test_reference_from_a_path_is_left_alone(tiny_model_dir, addition_dataset, fast_args):
    from trl_plus.engine.reference import match_reference_to_policy

    args = ReinforcePlusPlusConfig(**fast_args(per_device_train_batch_size=8, num_generations=4, kl_coef=0.01))
    trainer = ReinforcePlusPlusTrainer(model=tiny_model_dir, reward_funcs=sevens, args=args,
                                       train_dataset=addition_dataset())
    assert match_reference_to_policy(trainer, tiny_model_dir) is False
    # An unchanged model object needs no copy either.
    assert match_reference_to_policy(trainer, trainer.model) is False


def test_reference_of_another_architecture_is_an_error(tiny_model_dir, addition_dataset, fast_args, tmp_path):
    from trl_plus.engine.reference import match_reference_to_policy
    from trl_plus.tiny import save_tiny_model

    args = ReinforcePlusPlusConfig(**fast_args(per_device_train_batch_size=8, num_generations=4, kl_coef=0.01))
    trainer = ReinforcePlusPlusTrainer(model=tiny_model_dir, reward_funcs=sevens, args=args,
                                       train_dataset=addition_dataset())
    trainer.ref_model = AutoModelForCausalLM.from_pretrained(save_tiny_model(tmp_path / "small", size="small"))
    trainer.ref_model.lm_head = torch.nn.Identity()  # other parameter names
    with pytest.raises(ValueError, match="other parameters than the policy"):
        match_reference_to_policy(trainer, trainer.model)
