"""The engine's composition API: a user's estimator trains, config-time errors name the fix, preset aliases."""

import re

import pytest
import torch

from tests.conftest import changed, trainable_snapshot
from trl_plus import (
    DAPOConfig,
    PlusGRPOConfig,
    PlusGRPOTrainer,
    PPOConfig,
    ReinforcePlusPlusConfig,
    ReMaxConfig,
    register_estimator,
)
from trl_plus.engine.estimators import ESTIMATORS, get_estimator

TEXTS = ["7", "77", "a", "777"]
seen = {}


@register_estimator("doubled_group_mean", needs_reference_logps=True)
def doubled_group_mean(ctx):
    """Twice the reward minus its group mean; keeps what it was given for the test to check."""
    seen.update(ref=ctx.ref_logps, logps=ctx.logps, mask=ctx.mask, rewards=ctx.rewards)
    groups = ctx.rewards.view(-1, ctx.args.num_generations)
    return 2.0 * (groups - groups.mean(dim=1, keepdim=True)).flatten()[ctx.local]


def sevens(completions, **kwargs):
    return [float(c.count("7")) for c in completions]


def test_a_custom_estimator_trains(tiny_model_dir, addition_dataset, fast_args, pin):
    args = PlusGRPOConfig(**fast_args(advantage_estimator="doubled_group_mean", max_steps=1))
    trainer = PlusGRPOTrainer(model=tiny_model_dir, reward_funcs=sevens, args=args, train_dataset=addition_dataset())
    assert trainer.ref_model is not None  # asked for reference log-probs: the reference model is built (beta = 0)
    pin(trainer, TEXTS)
    reached = []
    compute_loss = trainer._compute_loss
    trainer._compute_loss = lambda model, inputs: (reached.append(inputs["advantages"]), compute_loss(model, inputs))[1]
    before = trainable_snapshot(trainer.model)
    trainer.train()
    rewards = torch.tensor(sevens(TEXTS))
    # TRL shuffles the rows of a generation batch before the loss: compare the values (all distinct here)
    torch.testing.assert_close(reached[0].sort().values, (2.0 * (rewards - rewards.mean())).sort().values)
    assert seen["ref"].shape == seen["mask"].shape == seen["logps"].shape
    assert changed(before, trainer.model)


def test_registry_errors_name_the_fix():
    with pytest.raises(ValueError, match="already registered"):
        register_estimator("grpo")(lambda ctx: None)
    with pytest.raises(ValueError, match="already registered"):
        register_estimator("gae")(lambda ctx: None)
    with pytest.raises(ValueError, match="Did you mean 'reinforce_pp'"):
        get_estimator("reinforce_p")
    assert {"grpo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "remax", "process", "raft",
            "gae"} <= set(ESTIMATORS)
    assert [name for name, spec in ESTIMATORS.items() if spec.needs_critic] == ["gae"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"advantage_estimator": "nope"}, "Unknown advantage_estimator 'nope'"),
        ({"advantage_estimator": "gae"}, ("needs a learned critic (value model), which PlusGRPOConfig does not "
                                          "train: use trl_plus.PPOConfig with trl_plus.PPOTrainer (CLI: trl-plus "
                                          "train ppo)")),
        ({"kl_in_reward_estimator": "k9"}, "kl_in_reward_estimator='k9' is not a KL estimator"),
        ({"kl_in_loss_estimator": "kl"}, "kl_in_loss_estimator='kl' is not a KL estimator"),
        ({"gamma": 0.9}, "gamma=0.9 has no effect with advantage_estimator='grpo'"),
        ({"dynamic_sampling": True, "scale_rewards": "batch"}, "set scale_rewards='group'"),
        ({"kl_in_reward_coef": 0.1, "scale_rewards": "batch"}, "recomputes the group advantages"),
        ({"advantage_estimator": "raft", "beta": 0.1}, "set beta=0.0"),
        ({"beta": 0.1, "kl_in_loss_estimator": "k2", "loss_type": "no_such"}, "loss_type"),
        ({"overlong_buffer_len": 8}, "overlong_buffer_len (8) must be in [1, max_completion_length - 1]"),
    ],
)
def test_incompatible_choices_fail_at_config_time(fast_args, overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        PlusGRPOConfig(**fast_args(**overrides))


def test_remax_with_vllm_is_not_implemented(fast_args):
    with pytest.raises(NotImplementedError, match="use_vllm=False"):
        PlusGRPOConfig(**fast_args(advantage_estimator="remax", use_vllm=True))


def test_reinforce_pp_baseline_with_dynamic_sampling_config(fast_args):
    args = PlusGRPOConfig(**fast_args(advantage_estimator="reinforce_pp_baseline", dynamic_sampling=True,
                                      kl_in_reward_coef=0.01, gamma=0.99))
    assert (args.advantage_estimator, args.dynamic_sampling, args.gamma) == ("reinforce_pp_baseline", True, 0.99)


@pytest.mark.parametrize(
    ("config", "overrides", "expected"),
    [
        (ReinforcePlusPlusConfig, {}, {"kl_in_reward_coef": 0.01, "kl_coef": 0.01, "advantage_estimator":
                                       "reinforce_pp", "reward_clip": 10.0}),
        (ReinforcePlusPlusConfig, {"kl_coef": 0.2, "kl_estimator": "k2", "loss_kl_estimator": "k2",
                                   "baseline": True},
         {"kl_in_reward_coef": 0.2, "kl_in_reward_estimator": "k2", "kl_in_loss_estimator": "k2",
          "advantage_estimator": "reinforce_pp_baseline"}),
        (ReinforcePlusPlusConfig, {"kl_in_reward_coef": 0.3}, {"kl_coef": 0.3}),
        (ReinforcePlusPlusConfig, {"advantage_estimator": "reinforce_pp_baseline"}, {"baseline": True}),
        (ReMaxConfig, {"kl_coef": 0.1}, {"kl_in_reward_coef": 0.1, "advantage_estimator": "remax"}),
        (PPOConfig, {}, {"kl_in_reward_coef": 0.01, "kl_coef": 0.01, "kl_in_reward_estimator": "k1",
                         "advantage_estimator": "gae", "gamma": 1.0, "lam": 0.95, "beta": 0.0}),
        (PPOConfig, {"kl_coef": 0.0, "kl_estimator": "k2", "gamma": 0.9},
         {"kl_in_reward_coef": 0.0, "kl_in_reward_estimator": "k2", "gamma": 0.9}),
        (DAPOConfig, {}, {"dynamic_sampling": True, "epsilon_high": 0.28, "loss_type": "dapo",
                          "advantage_estimator": "grpo"}),
    ],
)
def test_presets_defaults_and_aliases(fast_args, config, overrides, expected):
    args = config(**fast_args(**overrides))
    assert {k: getattr(args, k) for k in expected} == expected


def test_an_alias_and_its_field_must_agree(fast_args):
    with pytest.raises(ValueError, match="kl_coef=0.2 and kl_in_reward_coef=0.3 are the same setting"):
        ReinforcePlusPlusConfig(**fast_args(kl_coef=0.2, kl_in_reward_coef=0.3))
    with pytest.raises(ValueError, match="or trl_plus.PlusGRPOConfig for other estimators"):
        ReinforcePlusPlusConfig(**fast_args(advantage_estimator="rloo"))
    with pytest.raises(ValueError, match="which uses no critic: use 'gae'"):
        PPOConfig(**fast_args(advantage_estimator="rloo"))


def test_a_critic_estimator_needs_a_trainer_with_a_critic(tiny_model_dir, addition_dataset, fast_args):
    """A PPOConfig passes PlusGRPOTrainer's config check (a subclass), but that trainer trains no critic."""
    with pytest.raises(ValueError, match="which PlusGRPOTrainer does not train: use trl_plus.PPOConfig with "
                                         "trl_plus.PPOTrainer"):
        PlusGRPOTrainer(model=tiny_model_dir, reward_funcs=sevens, args=PPOConfig(**fast_args()),
                        train_dataset=addition_dataset())


def test_process_reward_funcs_need_the_process_estimator(tiny_model_dir, addition_dataset, fast_args):
    with pytest.raises(ValueError, match="set advantage_estimator='process'"):
        PlusGRPOTrainer(model=tiny_model_dir, reward_funcs=sevens, args=PlusGRPOConfig(**fast_args()),
                        train_dataset=addition_dataset(), process_reward_funcs=["arithmetic_steps"])


def test_readme_compose_snippet_trains(tiny_model_dir, addition_dataset, fast_args, pin):
    """The README's ten-line custom estimator, registered and trained for one step with dynamic sampling."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    snippet = re.search(r"## Compose\n.*?```python\n(.*?)```", readme, re.S).group(1)
    snippet = snippet.replace('output_dir="out", ', "**fast_args(max_steps=1), ")
    namespace = {"fast_args": fast_args}
    exec(snippet, namespace)  # noqa: S102 - the README's own code
    try:
        trainer = PlusGRPOTrainer(model=tiny_model_dir, reward_funcs=sevens, args=namespace["args"],
                                  train_dataset=addition_dataset())
        pin(trainer, TEXTS)
        reached = []
        compute_loss = trainer._compute_loss
        trainer._compute_loss = lambda m, inputs: (reached.append(inputs["advantages"]), compute_loss(m, inputs))[1]
        trainer.train()
    finally:
        ESTIMATORS.pop("median_baseline", None)
    rewards = torch.tensor(sevens(TEXTS))  # 1, 2, 0, 3: median 1 (the lower middle value)
    torch.testing.assert_close(reached[0].sort().values, (rewards - 1.0).sort().values)  # rows shuffled by TRL


def test_cli_composes_estimator_and_parts(tiny_model_dir, tmp_path):
    import json

    from trl_plus.cli import main

    report = tmp_path / "report.json"
    code = main(["train", "grpo", "--advantage_estimator", "reinforce_pp_baseline", "--dynamic_sampling", "true",
                 "--kl_in_reward_coef", "0.01", "--model", tiny_model_dir, "--max_steps", "1",
                 "--per_device_train_batch_size", "4", "--num_generations", "4", "--max_completion_length", "8",
                 "--num_samples", "16", "--output_dir", str(tmp_path / "out"), "--report_to", "none",
                 "--report_json", str(report)])
    assert code == 0
    assert json.loads(report.read_text())["steps"] == 1
