"""The `trl-plus` command line: help for every subcommand, one-line errors (the demo end to end runs in
test_readme.py, as the README's quick start)."""

import subprocess
import sys

import pytest

from trl_plus.cli import COMMANDS, main

# Words of this project's development setup that no message or help may contain (spelt in pieces so that a
# search of the repository for them finds nothing).
SETUP_WORDS = ("../" + "shared", "shared" + "/", "se" + "eds")


@pytest.mark.parametrize("argv", [[], *[[c] for c in COMMANDS]], ids=["top", *COMMANDS])
def test_help_is_clear(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: trl-plus" in out and len(out.splitlines()) > 3


def test_train_algo_help_lists_config_fields(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "reinforce_pp", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for option in ("--kl_coef", "--reward", "--load_in_4bit", "--max_steps", "--config"):
        assert option in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fly"], "invalid choice: 'fly'"),
        (["demo", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["demo", "--algo", "ppo2"], "invalid choice: 'ppo2'"),
    ],
    ids=["unknown-subcommand", "unknown-option", "unknown-demo-algo"],
)
def test_usage_errors_are_one_line_with_the_fix(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "--help" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "ppo2"], "Unknown algorithm 'ppo2'"),
        (["train", "grpo", "--model", "/no/such/model"], "model directory /no/such/model does not exist"),
        (["train", "grpo", "--reward", "gsm8k_corectness"], "gsm8k_correctness"),
        (["train", "grpo", "--dataset", "/no/such.jsonl"], "/no/such.jsonl does not exist"),
        (["train", "dapo", "--epsilon_high", "0.1"], "epsilon_high"),
    ],
    ids=["unknown-algo", "missing-model-dir", "misspelt-reward", "missing-data-file", "bad-config-value"],
)
def test_train_errors_name_the_problem_and_the_fix(argv, message, capsys, tmp_path):
    code = main([*argv, "--output_dir", str(tmp_path)] if len(argv) > 2 else argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert message in err[-1] and err[-1].startswith("trl-plus train: error:")


def test_train_rejects_a_data_file_that_is_not_gsm8k(tmp_path, tiny_model_dir, capsys):
    bad = tmp_path / "rows.jsonl"
    bad.write_text('{"text": "hello"}\n')
    assert main(["train", "grpo", "--model", tiny_model_dir, "--dataset", str(bad),
                 "--output_dir", str(tmp_path / "o")]) == 2
    assert "not GSM8K-schema" in capsys.readouterr().err


def test_malformed_yaml_config(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("learning_rate: [1e-5\nmax_steps: 3\n")
    assert main(["train", "grpo", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "trl-plus train: error:" in err and "Traceback" not in err


@pytest.mark.e2e
def test_tiny_model_command(tmp_path):
    out = subprocess.run([sys.executable, "-m", "trl_plus.cli", "tiny-model", str(tmp_path / "m"), "--seed", "1"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "m" / "model.safetensors").is_file()


def test_user_error_lives_in_its_own_module_and_python_m_reports_it():
    from trl_plus.data import DataError
    from trl_plus.errors import UserError

    assert issubclass(DataError, UserError)
    out = subprocess.run([sys.executable, "-m", "trl_plus.cli", "demo", "--rl-steps", "0"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2 and out.stderr.strip() == "trl-plus demo: error: --rl_steps must be >= 1 (got 0)."


def test_train_without_model_uses_the_cached_tiny_model_without_importing_the_demo(tmp_path, monkeypatch):
    from trl_plus.commands.train import _parse, build

    monkeypatch.setenv("TRL_PLUS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delitem(sys.modules, "trl_plus.demo", raising=False)
    script, config, model_args = _parse("grpo", ["--num_samples", "4", "--output_dir", str(tmp_path / "o")])
    trainer = build("grpo", script, config, model_args)
    assert (tmp_path / "cache" / "tiny-seed42" / "model.safetensors").is_file()
    assert trainer.model.num_parameters() < 2_000_000
    assert "trl_plus.demo" not in sys.modules


def test_cli_leaves_the_hub_settings_alone(tmp_path, monkeypatch):
    import os

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert main(["tiny-model", str(tmp_path / "m")]) == 0
    assert "HF_HUB_OFFLINE" not in os.environ


def test_hub_dataset_failure_names_what_works_anywhere(monkeypatch):
    import datasets

    from trl_plus.data import DataError, load_rows

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as e:
        load_rows("gsm8k")
    message = str(e.value)
    assert ".jsonl" in message and "'question'" in message and "--dataset synthetic" in message
    assert not any(word in message for word in SETUP_WORDS)


@pytest.mark.parametrize("argv", [["train"], ["train", "grpo"], ["eval"], ["demo"], ["tiny-model"]])
def test_help_names_nothing_of_a_development_setup(argv, capsys):
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    out = capsys.readouterr().out
    assert not any(word in out for word in SETUP_WORDS)
