"""The demo's shipped warm start (`trl_plus.warm_start`): what it is, that it scores what it records, how it is
remade, and the demo's two ways to start RL."""

import json

import pytest
import torch

from trl_plus import warm_start
from trl_plus.demo import DemoSettings, demo_problems, greedy_accuracy, run_demo
from trl_plus.tiny import SIZES, build_tokenizer, save_tiny_model


def test_shipped_warm_start_is_the_tiny_model_with_the_demo_tokenizer_and_recipe():
    model, tok = warm_start.load_warm_start()
    info = warm_start.warm_start_info()
    assert {k: getattr(model.config, k) for k in SIZES["tiny"]} == SIZES["tiny"]
    assert sum(p.numel() for p in model.parameters()) == 1_063_424
    assert model.dtype == torch.float32
    assert tok.get_vocab() == build_tokenizer().get_vocab()
    assert tok.chat_template == build_tokenizer().chat_template
    assert {k: info["settings"][k] for k in warm_start.RECIPE} == warm_start.RECIPE
    # it stopped at its target, as the demo's warm-up does
    assert info["sft_steps"] < info["settings"]["sft_max_steps"]
    last_check, last_accuracy = list(info["dev_accuracy"].items())[-1]
    assert int(last_check) == info["sft_steps"] and last_accuracy >= info["settings"]["sft_target"]


def test_shipped_warm_start_scores_the_test_accuracy_it_records():
    model, tok = warm_start.load_warm_start()
    info = warm_start.warm_start_info()
    s = info["settings"]
    _, _, test = demo_problems(DemoSettings(seed=s["seed"], n_test=s["n_test"]))
    acc = greedy_accuracy(model, tok, test, s["max_completion_length"])
    # greedy decoding is deterministic; another CPU's float rounding may flip a rare near-tie
    assert acc == pytest.approx(info["test_accuracy"], abs=0.02)
    assert 0.25 <= acc <= 0.5  # knows the format, often wrong: room for RL


def test_make_warm_start_saves_a_trained_model_and_its_metadata(tmp_path):
    info = warm_start.make_warm_start(tmp_path / "ws", cache_dir=str(tmp_path / "cache"), n_train=64, n_dev=4,
                                      n_test=4, sft_batch=8, sft_max_steps=2, sft_eval_every=1)
    assert info["sft_steps"] == 2 and list(info["dev_accuracy"]) == ["1", "2"]
    assert info["settings"]["sft_batch"] == 8 and info["settings"]["seed"] == warm_start.RECIPE["seed"]
    assert json.loads((tmp_path / "ws" / warm_start.INFO_FILE).read_text()) == json.loads(json.dumps(info))
    assert not (tmp_path / "ws" / "sft").exists()  # the trainer's work folder is not kept
    model, _ = warm_start.load_warm_start(tmp_path / "ws")
    from transformers import AutoModelForCausalLM

    untrained = AutoModelForCausalLM.from_pretrained(save_tiny_model(tmp_path / "untrained", seed=0))
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, untrained.get_parameter(n))]
    assert changed  # two SFT steps moved the weights


def test_missing_shipped_warm_start_names_the_fixes(monkeypatch, tmp_path):
    monkeypatch.setattr(warm_start, "SHIPPED", tmp_path)
    with pytest.raises(FileNotFoundError, match="reinstall trl-plus, or run the demo with --warm_start sft"):
        warm_start.load_warm_start()


@pytest.mark.parametrize(("fields", "message"), [
    ({"warm_start": "pretrained"}, r"warm_start='pretrained': choose one of \['shipped', 'sft'\]"),
    ({"model_size": "small"}, "model_size='small' needs warm_start='sft': the shipped warm start is the tiny model"),
])
def test_demo_settings_reject_a_warm_start_they_cannot_run(fields, message):
    with pytest.raises(ValueError, match=message):
        DemoSettings(**fields)
    assert DemoSettings(warm_start="sft", model_size="small").model_size == "small"


@pytest.mark.e2e
@pytest.mark.parametrize("start", ["shipped", "sft"])
def test_run_demo_starts_rl_from_the_chosen_warm_start(start, tmp_path):
    settings = DemoSettings(warm_start=start, out_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"),
                            n_train=64, n_dev=4, n_test=8, sft_batch=8, sft_max_steps=2, sft_eval_every=1,
                            rl_steps=1, rl_prompts_per_step=2, num_generations=2)
    report = run_demo(settings)
    assert report["warm_start"] == start and report["steps"] == 1
    if start == "shipped":  # the shipped model, untouched: its recorded accuracy on these 8 problems
        model, tok = warm_start.load_warm_start()
        _, _, test = demo_problems(settings)
        assert report["accuracy_before"] == greedy_accuracy(model, tok, test, settings.max_completion_length)
        assert report["sft_steps"] == warm_start.warm_start_info()["sft_steps"]
        assert not (tmp_path / "cache").exists()  # no tiny model was built
    else:
        assert report["sft_steps"] == 2 and (tmp_path / "cache").is_dir()


def test_the_wheel_ships_every_file_of_the_warm_start():
    import fnmatch
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["trl_plus"]
    files = [p.relative_to(warm_start.SHIPPED.parent.parent).as_posix() for p in warm_start.SHIPPED.iterdir()]
    assert len(files) == 7 and all(any(fnmatch.fnmatch(f, pat) for pat in patterns) for f in files)
