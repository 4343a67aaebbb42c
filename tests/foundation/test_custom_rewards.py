"""Rewards from the command line and custom rewards: repeated --reward accumulates, MODULE:FUNCTION and
FILE.py:FUNCTION load the user's code, PARAM=VALUE builds factories (also from YAML), `text_reward` hands
a function plain strings, and a reward that never varies is reported."""

from __future__ import annotations

import textwrap
import warnings

import pytest

import reward_fns
from trl_plus.commands.train import _parse, _rewards, build

CHAT = [[{"role": "assistant", "content": "hi"}], [{"role": "assistant", "content": "hello there"}]]


def names_and_weights(argv):
    script, _, _ = _parse("grpo", argv)
    funcs, weights = _rewards(script.reward)
    return [f.__name__ for f in funcs], weights


@pytest.mark.parametrize(
    "argv, names, weights",
    [
        (["--reward", "gsm8k_format", "--reward", "gsm8k_correctness"], ["gsm8k_format", "gsm8k_correctness"],
         [1.0, 1.0]),
        (["--reward", "gsm8k_correctness", "--reward=length_penalty=0.5"], ["gsm8k_correctness", "length_penalty"],
         [1.0, 0.5]),
        (["--reward", "gsm8k_format", "gsm8k_integer=2", "--max_steps", "1", "--reward", "math_equivalence"],
         ["gsm8k_format", "gsm8k_integer", "math_equivalence"], [1.0, 2.0, 1.0]),
        ([], ["gsm8k_format", "gsm8k_correctness"], [1.0, 1.0]),
    ],
    ids=["two-flags", "equals-form", "mixed", "default-preset"],
)
def test_repeated_reward_flags_accumulate(argv, names, weights):
    assert names_and_weights(argv) == (names, weights)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(textwrap.dedent("""
        import reward_fns

        @reward_fns.text_reward
        def short_answer(text):
            return 1 / (1 + len(text))

        def make_capped(cap=3):
            def capped(prompts, completions, **kwargs):
                return [min(len(reward_fns.completion_text(c)), cap) for c in completions]
            return capped
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(__import__("sys").modules, "my_rewards", raising=False)
    return tmp_path


@pytest.mark.parametrize(
    "spec, scores, weight",
    [
        ("my_rewards:short_answer", [1 / 3, 1 / 12], 1.0),
        ("my_rewards.short_answer=0.5", [1 / 3, 1 / 12], 0.5),
        ("./my_rewards.py:short_answer=2", [1 / 3, 1 / 12], 2.0),
        ("my_rewards:make_capped:cap=5", [2, 5], 1.0),
        ("length_penalty=0.5:free_length=2:max_length=4:penalty=-1", [0.0, -1.0], 0.5),
    ],
    ids=["module-colon", "dotted-weight", "file-path", "user-factory", "registry-factory"],
)
def test_reward_specs_load_user_code_and_factory_parameters(user_module, spec, scores, weight):
    fn, w = reward_fns.from_spec(spec)
    assert w == weight
    assert fn(prompts=[None, None], completions=CHAT) == pytest.approx(scores)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("gsm8k_corectness", "Did you mean gsm8k_correctness"),
        ("no_such_module:f", "cannot be imported"),
        ("my_rewards:nope", "has no function 'nope'"),
        ("missing.py:f", "does not exist"),
        ("length_penalty:bogus=1", "unexpected keyword argument 'bogus'"),
        ("gsm8k_format=heavy", "must be a number"),
        ("length_penalty:200", "is not PARAM=VALUE"),
    ],
)
def test_bad_reward_specs_name_the_fix(user_module, spec, message, capsys, monkeypatch):
    from trl_plus.cli import main

    monkeypatch.setenv("TRL_PLUS_CACHE", str(user_module / "cache"))
    assert main(["train", "grpo", "--reward", spec]) == 2
    assert not (user_module / "cache").exists()  # rewards are checked before a model is built
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_yaml_rewards_take_strings_and_mappings(user_module, tiny_model_dir):
    (user_module / "recipe.yaml").write_text(textwrap.dedent(f"""
        model: {tiny_model_dir}
        num_samples: 4
        reward:
          - gsm8k_correctness=2
          - my_rewards:short_answer
          - name: length_penalty
            weight: 0.25
            free_length: 10
            max_length: 20
    """))
    script, config, model_args = _parse("grpo", ["--config", "recipe.yaml", "--output_dir", "out"])
    trainer = build("grpo", script, config, model_args)
    assert trainer.reward_func_names == ["gsm8k_correctness", "short_answer", "length_penalty"]
    assert trainer.args.reward_weights == [2.0, 1.0, 0.25]
    assert trainer.reward_funcs[2].fn.max_length == 20


def test_text_reward_gets_plain_strings_and_named_columns():
    seen = []

    @reward_fns.text_reward
    def exact(text, answer, prompt):
        seen.append((text, answer, prompt))
        return text == answer

    prompts = [[{"role": "user", "content": "q1"}], [{"role": "user", "content": "q2"}]]
    assert exact(prompts=prompts, completions=CHAT, answer=["hi", "no"], trainer_state=None) == [1.0, 0.0]
    assert seen == [("hi", "hi", "q1"), ("hello there", "no", "q2")]
    assert exact.__name__ == "exact"


def test_text_reward_abstains_on_errors_with_one_warning():
    @reward_fns.text_reward
    def fragile(text):
        return 1 / (len(text) - 2)

    with pytest.warns(reward_fns.RewardWarning, match="fragile") as record:
        assert fragile(completions=["ab", "abc", "xy"]) == [None, 1.0, None]
    assert len(record) == 1


def test_register_docstring_example_runs():
    doc = reward_fns.register.__doc__
    code = textwrap.dedent("\n".join(line for line in doc.splitlines()[2:] if line.startswith("        ")))
    scope = {"reward_fns": reward_fns}
    try:
        exec(code, scope)  # noqa: S102 - the docstring's own example
        assert reward_fns.get("shouting")(prompts=[None, None], completions=[[{"role": "assistant",
                                         "content": "HEY"}], "quiet"]) == [1.0, 0.0]
    finally:
        reward_fns.registry._REGISTRY.pop("shouting", None)


@pytest.mark.parametrize(
    "batches, warns",
    [
        ([[0.5, 0.5, 0.5]] * 20, True),
        ([[0.5, 0.5, 0.5]] * 19, False),
        ([[0.5, 0.5, 0.5]] * 10 + [[0.5, 0.4, 0.5]] + [[0.5, 0.5, 0.5]] * 10, False),
        ([[None, None]] * 30, False),
        ([[[(3, 1.0)], [(3, 1.0)]]] * 30, False),  # step-level rewards are not compared
    ],
    ids=["constant-20", "constant-19", "varies-once", "abstains", "process"],
)
def test_a_reward_constant_for_many_batches_is_reported_once(batches, warns):
    outputs = iter(batches)

    def lazy(prompts, completions, **kwargs):
        return next(outputs)

    watched = reward_fns.watch_constant(lazy)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in batches:
            watched(prompts=None, completions=None)
    hits = [w for w in record if issubclass(w.category, reward_fns.ConstantRewardWarning)]
    assert len(hits) == (1 if warns else 0)
    if warns:
        assert "lazy" in str(hits[0].message) and "text_reward" in str(hits[0].message)


def test_the_list_length_trap_is_reported():
    """The issue's `1 / (1 + len(c))` on conversational completions measures the message list: constant."""
    trap = reward_fns.watch_constant(lambda prompts, completions, **kw: [1 / (1 + len(c)) for c in completions])
    for _ in range(reward_fns.base.CONSTANT_PATIENCE - 1):
        assert trap(prompts=None, completions=CHAT) == [0.5, 0.5]
    with pytest.warns(reward_fns.ConstantRewardWarning):
        trap(prompts=None, completions=CHAT)
