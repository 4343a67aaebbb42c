"""examples/: one YAML recipe and one Python example per algorithm.

Every recipe is parsed by the real `trl-plus train` parser (TRL's `TrlParser`), its values round-trip into the
dataclasses, every key is a real field, every value line names its source, and the parsed config builds its
trainer on the tiny offline model. Three Python examples (reinforce_pp, dapo, ps_grpo: a (B, T)-advantage
trainer, the one with its own sampling loop, and the one with process rewards) run end to end with
--offline_smoke and must take a real gradient step; the other five share their code path line for line and
are covered by the recipe tests.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import runpy
import tempfile
from pathlib import Path

import pytest
import yaml

from trl_plus.algorithms import ALGORITHMS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RECIPES = EXAMPLES / "recipes"
GSM8K_TRAIN = Path(__file__).resolve().parents[1] / "data" / "gsm8k" / "train.jsonl"  # the committed sample
# The labels a recipe comment may cite; examples/recipes/grpo.yaml's header says what each one is.
SOURCES = (
    "write-up", "theLMbook", "paper", "docs/algorithms.md", "TRL default", "our choice", "OpenRLHF", "DeepSeekMath"
)


def recipe(algo: str) -> dict:
    return yaml.safe_load((RECIPES / f"{algo}.yaml").read_text())


def parse(algo: str, *extra: str):
    from trl_plus.commands.train import _parse

    return _parse(algo, ["--config", str(RECIPES / f"{algo}.yaml"), *extra])


def test_every_algorithm_has_a_recipe_and_an_example():
    from trl_plus.commands.listwise import ALGOS as LISTWISE  # listwise trainers train on ranked data, not rewards

    recipes = {p.stem for p in RECIPES.glob("*.yaml")}
    assert set(ALGORITHMS) <= recipes and recipes - set(ALGORITHMS) <= set(LISTWISE), sorted(recipes)
    for algo in ALGORITHMS:
        source = (EXAMPLES / f"{algo}.py").read_text()
        doc = source.split('"""')[1]
        assert "huggingface.co/papers/" in doc and "internet" in doc, f"{algo}.py: docstring must cite the paper"
        assert "--offline_smoke" in source and f"examples/recipes/{algo}.yaml" in doc


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_every_recipe_value_names_its_source(algo):
    for n, line in enumerate((RECIPES / f"{algo}.yaml").read_text().splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            comment = line.partition("#")[2]
            assert any(s in comment for s in SOURCES), f"{algo}.yaml:{n} has no source comment: {line!r}"


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_recipe_keys_are_real_fields(algo):
    from trl import ModelConfig

    from trl_plus.algorithms import get_algorithm
    from trl_plus.commands.train import TrainArguments

    config_cls, _ = get_algorithm(algo).classes()
    fields = {f.name for cls in (TrainArguments, config_cls, ModelConfig) for f in dataclasses.fields(cls)}
    assert set(recipe(algo)) <= fields, set(recipe(algo)) - fields


def test_unknown_recipe_key_is_rejected_by_the_parser(tmp_path):
    """A key that no dataclass has fails, with the nearest valid one (so a typo in a recipe cannot pass silently)."""
    from trl_plus.commands.train import _parse
    from trl_plus.errors import UserError

    bad = tmp_path / "bad.yaml"
    bad.write_text((RECIPES / "grpo.yaml").read_text() + "\nnum_generation: 8\n")
    with pytest.raises(UserError, match="num_generation"):
        _parse("grpo", ["--config", str(bad)])


def _plain(value):
    return value.value if isinstance(value, enum.Enum) else value


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_recipe_parses_through_the_cli_and_round_trips(algo):
    import torch

    from trl_plus.algorithms import get_algorithm

    script, config, model_args = parse(algo)
    config_cls, _ = get_algorithm(algo).classes()
    assert type(config) is config_cls
    for key, value in recipe(algo).items():
        if key == "bf16" and not torch.cuda.is_available():
            assert config.bf16 is False  # the CLI turns bf16 off on CPU-only machines
            continue
        obj = next(o for o in (script, config, model_args) if hasattr(o, key))
        assert _plain(getattr(obj, key)) == value, f"{algo}.yaml: {key}"
    # The published LoRA setting, spelled out for the values that matter most.
    assert model_args.use_peft and model_args.lora_r == 8 and model_args.lora_alpha == 16
    assert model_args.lora_target_modules == ["q_proj", "k_proj", "v_proj"]
    assert script.dataset == "gsm8k" and script.model.startswith("Qwen/Qwen2.5-")
    assert config.max_completion_length == 400 and config.learning_rate == 5e-6
    assert config.num_generations == (2 if algo == "remax" else 8)
    assert config.per_device_train_batch_size * config.gradient_accumulation_steps == 16


def test_recipes_set_each_algorithms_own_values():
    assert parse("dr_grpo")[1].scale_rewards == "none"
    dapo = parse("dapo")[1]
    assert (dapo.epsilon, dapo.epsilon_high, dapo.loss_type, dapo.beta) == (0.2, 0.28, "dapo", 0.0)
    assert dapo.dynamic_sampling and dapo.dynamic_sampling_metric == "gsm8k_correctness"
    rpp = parse("reinforce_pp")[1]
    assert (rpp.baseline, rpp.kl_coef, rpp.kl_estimator, rpp.beta) == (False, 0.01, "k1", 0.0)
    base = parse("reinforce_pp_baseline")[1]
    assert base.baseline and base.loss_kl_estimator == "k2" and base.beta > 0 and base.kl_coef == 0
    assert parse("rahf")[1].beta == 0.0
    script, ps, _ = parse("ps_grpo")
    assert "arithmetic_steps" in script.reward and ps.outcome_weight > 0


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_recipe_builds_its_trainer_on_the_tiny_model(algo, tiny_model_dir, tmp_path):
    """What the trainer checks only at construction (DAPO's metric name, ps_grpo's process reward, LoRA target
    modules) also holds for the recipe; only the model, data and precision are swapped for offline ones."""
    from trl_plus.algorithms import get_algorithm
    from trl_plus.commands.train import build

    script, config, model_args = parse(algo, "--model", tiny_model_dir, "--dataset", "synthetic", "--num_samples",
                                       "16", "--dtype", "float32", "--use_cpu", "True", "--output_dir", str(tmp_path))
    trainer = build(algo, script, config, model_args)
    _, trainer_cls = get_algorithm(algo).classes()
    assert type(trainer) is trainer_cls
    assert type(trainer.model).__name__.startswith("Peft")
    assert "gsm8k_correctness" in trainer.reward_func_names


SMOKE = {
    "reinforce_pp": "reinforce_pp/kl_reward",
    "dapo": "dapo/gen_rounds",
    "ps_grpo": "process/steps_per_completion",
}


@pytest.mark.e2e
@pytest.mark.parametrize("algo", list(SMOKE))
def test_example_offline_smoke_takes_a_real_step(algo, tmp_path, monkeypatch):

    import torch

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the example's temp model and output dirs
    argv = ["--offline_smoke"]
    if algo == "dapo":  # the environment variable works as well as the flag
        monkeypatch.setenv("TRL_PLUS_OFFLINE_SMOKE", "1")
        argv = []
    if algo == "ps_grpo":  # --data FILE.jsonl: real GSM8K questions and answers
        argv += ["--data", str(GSM8K_TRAIN)]
    monkeypatch.syspath_prepend(str(EXAMPLES))  # as `python examples/x.py` does, for `from common import ...`
    trainer = runpy.run_path(str(EXAMPLES / f"{algo}.py"), run_name="example")["main"](argv)
    assert trainer.state.global_step == 1
    logs = [row for row in trainer.state.log_history if "loss" in row]
    assert logs and math.isfinite(logs[-1]["loss"]) and SMOKE[algo] in logs[-1]
    assert logs[-1]["grad_norm"] > 0  # the rewards differed within a group, so the step had a gradient
    lora_b = [p for n, p in trainer.model.named_parameters() if "lora_B" in n]
    assert lora_b and any(torch.count_nonzero(p) > 0 for p in lora_b)  # LoRA B starts at zero
    if algo == "dapo":
        assert logs[-1]["dapo/gen_rounds"] == 1  # the first round kept enough groups
    assert (Path(trainer.args.output_dir) / "adapter_config.json").is_file()
