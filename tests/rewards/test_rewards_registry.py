"""The registry: names, lookup errors, factories with parameters, user registration, presets, TRL wiring."""

from __future__ import annotations

import pickle

import pytest

import reward_fns
from reward_fns import registry

API_NAMES = {
    "gsm8k_format",
    "gsm8k_strict_format",
    "gsm8k_soft_format",
    "gsm8k_hash_format",
    "gsm8k_trailing_penalty",
    "gsm8k_correctness",
    "gsm8k_integer",
    "math_equivalence",
    "length_penalty",
    "soft_overlong",
    "arithmetic_steps",
}


def test_registered_names_are_the_api():
    assert API_NAMES <= set(reward_fns.names())
    assert reward_fns.names() == sorted(reward_fns.names())


@pytest.mark.parametrize("name", sorted(API_NAMES - {"soft_overlong"}))
def test_functions_have_stable_names_and_pickle(name):
    fn = reward_fns.get(name)
    # GRPOTrainer logs a reward under `getattr(f, "__name__", type(f).__name__)` (trl.trainer.utils).
    assert getattr(fn, "__name__", None) == name
    clone = pickle.loads(pickle.dumps(fn))  # TRL's async rollout worker pickles reward functions
    assert clone.__name__ == name
    assert reward_fns.is_process_reward(fn) == (name == "arithmetic_steps")


def test_unknown_name_lists_valid_names():
    with pytest.raises(KeyError) as err:
        reward_fns.get("gsm8k_corectness")
    assert "gsm8k_correctness" in str(err.value) and "arithmetic_steps" in str(err.value)
    with pytest.raises(KeyError, match="gsm8k_lm_eval"):
        reward_fns.preset("nope")


def test_parameters_build_a_new_function():
    custom = reward_fns.get("gsm8k_correctness", exact=3.0)
    assert custom is not reward_fns.get("gsm8k_correctness")
    assert custom(None, ["<answer>\n#### 4\n</answer>"], answer=["4"]) == [3.0]
    with pytest.raises(TypeError, match="exactt"):
        reward_fns.get("gsm8k_correctness", exactt=3.0)


def test_soft_overlong_is_trls_factory_and_needs_its_parameters():
    from trl.rewards import get_soft_overlong_punishment

    assert reward_fns.soft_overlong is get_soft_overlong_punishment
    with pytest.raises(TypeError) as err:
        reward_fns.get("soft_overlong")
    assert "max_completion_len" in str(err.value) and "soft_punish_cache" in str(err.value)
    fn = reward_fns.get("soft_overlong", max_completion_len=100, soft_punish_cache=20)
    assert fn(completion_ids=[[1] * 50, [1] * 90, [1] * 200]) == [0.0, -0.5, -1.0]


def test_register_user_functions():
    try:

        @reward_fns.register("test_shouting")
        def shouting(prompts, completions, **kwargs):
            return [float(str(c).isupper()) for c in completions]

        assert reward_fns.get("test_shouting") is shouting
        assert "test_shouting" in reward_fns.names()
        with pytest.raises(ValueError, match="already registered"):
            reward_fns.register("test_shouting", shouting)
        with pytest.raises(TypeError, match="no parameters"):
            reward_fns.get("test_shouting", scale=2)

        def make_bonus(value):
            return lambda prompts, completions, **kw: [value] * len(completions)

        reward_fns.register("test_bonus", make_bonus, factory=True)
        assert reward_fns.get("test_bonus", value=0.5)(None, ["a"]) == [0.5]
        with pytest.raises(TypeError, match="value"):
            reward_fns.get("test_bonus")

        def steps(prompts, completions, **kwargs):
            return [[(len(c) - 1, 1.0)] if c else [] for c in completions]

        reward_fns.register("test_steps", steps, process=True)
        assert reward_fns.is_process_reward(reward_fns.get("test_steps"))
    finally:
        for name in ("test_shouting", "test_bonus", "test_steps"):
            registry._REGISTRY.pop(name, None)


def test_presets_reproduce_the_grpo_from_scratch_scoring(tmp_path):
    from trl import GRPOConfig

    funcs, weights = reward_fns.preset("gsm8k")
    assert [f.__name__ for f in funcs] == ["gsm8k_format", "gsm8k_correctness"]
    funcs_lm, weights_lm = reward_fns.preset("gsm8k_lm_eval")
    assert [f.__name__ for f in funcs_lm] == [
        "gsm8k_format",
        "gsm8k_hash_format",
        "gsm8k_trailing_penalty",
        "gsm8k_correctness",
    ]
    config = GRPOConfig(output_dir=str(tmp_path), reward_weights=weights_lm, report_to="none", use_cpu=True, bf16=False)
    assert config.reward_weights == weights_lm == [1.0] * 4

    def total(preset_funcs, preset_weights, text, gold="72"):
        return sum(w * f(None, [text], answer=[gold])[0] for f, w in zip(preset_funcs, preset_weights))

    seed_style = "<reasoning>\n...\n</reasoning>\n<answer>\n72\n</answer>"
    assert total(funcs, weights, seed_style) == pytest.approx(0.8 + 2.0)
    assert total(funcs, weights, seed_style.replace("72", "72.0")) == pytest.approx(0.8 + 1.5)
    assert total(funcs, weights, "72") == pytest.approx(2.0)
    lm_style = "<reasoning>\n...\n</reasoning>\n<answer>\n#### 72\n</answer>"
    assert total(funcs_lm, weights_lm, lm_style) == pytest.approx(0.8 + 0.2 + 2.0)
    assert total(funcs_lm, weights_lm, lm_style + "\nextra") == pytest.approx(0.8 + 0.2 - 0.5 + 2.0)
