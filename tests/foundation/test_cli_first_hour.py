"""A user's first hour with `trl-plus`: one flag convention with "did you mean", `--algo`, help that is
fast and grouped, batch-size errors that name the flags, output named after the model, and a run that
ends by saying where the model is and how to evaluate it, without warnings the user cannot act on."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import pytest

from trl_plus.cli import build_parser, main
from trl_plus.commands.train import _parse, _split_algo
from trl_plus.commands.train_options import batch_message, default_output_dir
from trl_plus.errors import UserError


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    "argv, dest, value",
    [
        (["demo", "--rl_steps", "5"], "rl_steps", 5),
        (["demo", "--rl-steps", "5"], "rl_steps", 5),
        (["demo", "--out-dir=x"], "out_dir", "x"),
        (["eval", "ckpt", "--data_dir", "d"], "data_dir", "d"),
        (["eval", "ckpt", "--data-dir", "d"], "data_dir", "d"),
        (["eval", "ckpt", "--max-gen-toks", "4"], "max_gen_toks", 4),
        (["eval", "ckpt", "--no-chat-template"], "apply_chat_template", False),
        (["tiny-model", "d", "--seed", "3"], "seed", 3),
    ],
)
def test_snake_and_kebab_spellings_both_work_outside_train(argv, dest, value):
    args, extras = build_parser().parse_known_args(argv)
    assert extras == [] and getattr(args, dest) == value


@pytest.mark.parametrize("argv", [["--max_steps", "3"], ["--max-steps", "3"], ["--max-steps=3"]])
def test_snake_and_kebab_spellings_both_work_in_train(argv):
    assert _parse("grpo", argv)[1].max_steps == 3


def test_yaml_keys_may_use_dashes(tmp_path):
    cfg = tmp_path / "r.yaml"
    cfg.write_text("max-steps: 3\nnum-generations: 2\nper-device-train-batch-size: 4\nlora-r: 4\nnum-samples: 8\n")
    script, config, model_args = _parse("grpo", ["--config", str(cfg), "--max_steps", "5"])
    assert (config.max_steps, config.num_generations, config.per_device_train_batch_size) == (5, 2, 4)
    assert model_args.lora_r == 4 and script.num_samples == 8


@pytest.mark.parametrize(
    "argv, hint",
    [
        (["train", "grpo", "--lr", "1e-5"], "did you mean --learning_rate?"),
        (["train", "grpo", "--max_step", "3"], "did you mean --max_steps?"),
        (["train", "dapo", "--epsilon-hi", "0.3"], "did you mean --epsilon_high"),
        (["demo", "--rl-step", "3"], "did you mean --rl_steps?"),
        (["eval", "ckpt", "--task", "gsm8k"], "did you mean --tasks?"),
    ],
)
def test_unknown_options_suggest_the_nearest(argv, hint, capsys):
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    assert code == 2
    assert hint in error_line(capsys)


def test_unknown_yaml_keys_suggest_the_nearest(tmp_path, capsys):
    cfg = tmp_path / "r.yaml"
    cfg.write_text("lr: 1.0e-5\n")
    assert main(["train", "grpo", "--config", str(cfg)]) == 2
    line = error_line(capsys)
    assert "unknown key 'lr'" in line and "--learning_rate" in line and "dataclass" not in line


@pytest.mark.parametrize(
    "tokens, algo, rest",
    [
        (["dapo", "--max_steps", "1"], "dapo", ["--max_steps", "1"]),
        (["--algo", "dapo", "--max_steps", "1"], "dapo", ["--max_steps", "1"]),
        (["--max_steps", "1", "--algo=remax"], "remax", ["--max_steps", "1"]),
        (["--max_steps", "1"], None, ["--max_steps", "1"]),
    ],
)
def test_algo_is_positional_or_an_option(tokens, algo, rest):
    assert _split_algo(tokens) == (algo, rest)


def test_algo_option_works_end_to_end_and_conflicts_are_named(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--algo", "dapo", "--help"])
    assert e.value.code == 0 and "dapo options (DAPOConfig)" in capsys.readouterr().out
    assert main(["train", "grpo", "--algo", "dapo"]) == 2
    assert "two algorithms given" in error_line(capsys)
    assert main(["train", "--max_steps", "3"]) == 2
    assert "no algorithm given" in error_line(capsys)


def test_train_alone_prints_help_and_exits_0(capsys):
    assert main(["train"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: trl-plus train ALGO") and "grpo, dr_grpo, dapo" in out


@pytest.mark.parametrize(
    "generation, groups, per_device, accumulation, fix",
    [
        (3, 2, 3, 1, "--per_device_train_batch_size 2 or 4, or --num_generations 3"),
        (12, 8, 6, 2, "--per_device_train_batch_size 4 or 8, or --num_generations 4 or 6"),
        (6, 4, 3, 1, "x 2 processes = 6 completions is not a multiple of 4: use --per_device_train_batch_size 2 or 4"),
        (12, 8, 3, 2, "x 2 processes = 12 completions"),
    ],
)
def test_batch_message_names_flags_and_nearest_values(generation, groups, per_device, accumulation, fix):
    assert fix in batch_message(generation, groups, per_device, accumulation)


def test_indivisible_batch_is_explained_through_the_cli(capsys):
    assert main(["train", "grpo", "--per_device_train_batch_size", "3", "--num_generations", "2"]) == 2
    line = error_line(capsys)
    assert "--per_device_train_batch_size 3 x --gradient_accumulation_steps 1 = 3 completions" in line
    assert "use --per_device_train_batch_size 2 or 4, or --num_generations 3" in line


@pytest.mark.parametrize(
    "model, expected",
    [(None, "runs/grpo-tiny"), ("Qwen/Qwen2.5-0.5B-Instruct", "runs/grpo-qwen2.5-0.5b-instruct"),
     ("~/models/my-model/", "runs/grpo-my-model")],
)
def test_default_output_dir_is_named_after_the_model(model, expected):
    assert default_output_dir("grpo", model) == expected


def test_a_recipe_with_another_model_writes_where_that_model_is_named(tmp_path, tiny_model_dir):
    from pathlib import Path

    recipe = str(Path(__file__).resolve().parents[2] / "examples" / "recipes" / "dapo.yaml")
    assert _parse("dapo", ["--config", recipe])[1].output_dir == "runs/dapo-qwen2.5-1.5b-gsm8k"
    name = Path(tiny_model_dir).name.lower()
    assert _parse("dapo", ["--config", recipe, "--model", tiny_model_dir])[1].output_dir == f"runs/dapo-{name}"
    assert _parse("dapo", ["--config", recipe, "--model", tiny_model_dir, "--output_dir", "x"])[1].output_dir == "x"


def test_train_help_is_fast_grouped_and_imports_nothing_heavy():
    code = textwrap.dedent("""
        import sys
        from trl_plus.cli import main
        try:
            main(["train", "reinforce_pp", "--help"])
        except SystemExit:
            pass
        print("HEAVY", [m for m in ("torch", "trl", "transformers", "datasets") if m in sys.modules])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip().endswith("HEAVY []"), out[-300:]
    lines = out.splitlines()
    assert len(lines) < 120
    order = [next(i for i, line in enumerate(lines) if line.startswith(h)) for h in
             ("trl-plus options:", "common training options", "LoRA and QLoRA", "reinforce_pp options")]
    assert order == sorted(order)
    assert any(line.strip().startswith("--kl_coef") for line in lines)
    assert any(line.strip().startswith("--reward SPEC") for line in lines)


def test_help_all_lists_every_trl_field_and_fixes_no_conversational(capsys):
    with pytest.raises(SystemExit):
        main(["train", "grpo", "--help_all"])
    out = capsys.readouterr().out
    assert "--warmup_steps" in out and "--lora_dropout" in out
    help_line = out[out.index("\n  --no_conversational"):].split("\n  --", 2)[1]
    assert "Plain-text prompts" in help_line


@pytest.mark.e2e
def test_a_run_ends_with_where_the_model_is_and_without_avoidable_warnings(tmp_path, tiny_model_dir, capsys,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        code = main(["train", "grpo", "--model", tiny_model_dir, "--num_samples", "2", "--max_steps", "1",
                     "--per_device_train_batch_size", "4", "--num_generations", "4", "--max_completion_length", "4",
                     "--report_to", "none", "--logging_steps", "1"])
    out, err = capsys.readouterr()
    assert code == 0
    name = default_output_dir("grpo", tiny_model_dir)
    assert (tmp_path / name / "model.safetensors").is_file()
    assert f"saved the model to {name}" in out and f"trl-plus eval {name} --tasks" in out
    assert "trained grpo for 1 steps" in out and "gsm8k_correctness" in out
    assert "step 1 | loss " in out + err and "'train_runtime'" not in out + err  # one readable line per step
    noisy = [str(w.message) for w in record if "gradient_checkpointing" in str(w.message)
             or "pin_memory" in str(w.message)]
    assert noisy == []


def test_a_missing_dataset_file_is_reported_as_not_found(capsys):
    assert main(["train", "grpo", "--dataset", "missing.json"]) == 2
    line = error_line(capsys)
    assert "missing.json does not exist (not found)" in line and "Unknown dataset" not in line


def test_an_existing_json_file_works(tmp_path):
    import json

    from trl_plus.data import load_rows

    rows = [{"question": "What is 2+2?", "answer": "2+2=4\n#### 4"}] * 3
    (tmp_path / "lines.json").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "array.json").write_text(json.dumps(rows))
    assert load_rows(str(tmp_path / "lines.json")) == rows == load_rows(str(tmp_path / "array.json"))


def test_user_error_is_the_one_the_commands_raise():
    with pytest.raises(UserError, match="Unknown algorithm 'ppo2'"):
        _parse("ppo2", [])


def test_demo_warm_start_and_sft_options_reach_the_settings_and_bad_ones_name_the_fix(monkeypatch, capsys):
    from trl_plus import demo

    seen = []
    monkeypatch.setattr(demo, "run_demo", lambda settings, report_json=None: seen.append(settings))
    assert main(["demo"]) == 0
    assert main(["demo", "--warm_start", "sft", "--model_size", "tiny"]) == 0
    assert main(["demo", "--warm-start", "sft", "--model-size", "small", "--sft_target", "0.3"]) == 0
    assert [(s.warm_start, s.model_size, s.sft_target) for s in seen] == [
        ("shipped", "tiny", 0.35), ("sft", "tiny", 0.35), ("sft", "small", 0.3)]
    assert main(["demo", "--warm_start", "sft", "--model_size", "huge"]) == 2
    assert error_line(capsys) == ("trl-plus demo: error: --model_size 'huge' is not a model size; choose one of "
                                  "['small', 'tiny'].")
    assert main(["demo", "--model_size", "small", "--sft_max_steps", "5"]) == 2
    assert error_line(capsys) == ("trl-plus demo: error: --model_size, --sft_max_steps only apply to the SFT warm-up: "
                                  "add --warm_start sft to run it here (the default starts from the shipped warm "
                                  "start).")
    assert len(seen) == 3
