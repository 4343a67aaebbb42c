"""The README's first sections, run as written: the code blocks are read from README.md, so they cannot drift.

Offline, only the model and the data are swapped (the tiny model for hub ids, a local GSM8K-schema file for
openai/gsm8k), plus, for commands that would train for minutes, a budget appended after them (command-line
values later on the line win): 1 step of 4 completions of at most 8 tokens (96 tokens, float32 weights and one
generation round for a GPU recipe). The "Swap a trainer in" snippet needs trl-plus configs to default bf16 to what the machine supports.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
ROWS = [
    {"question": "What is 12+30?", "answer": "12+30=<<12+30=42>>42\n#### 42"},
    {"question": "Ann has 3 bags of 4 apples. How many apples?", "answer": "3*4=<<3*4=12>>12\n#### 12"},
]
BUDGET = ["--max_steps", "1", "--per_device_train_batch_size", "4", "--num_generations", "4",
          "--max_completion_length", "8", "--report_to", "none", "--num_samples", "4"]


def section(title: str) -> str:
    match = re.search(rf"^##+ {re.escape(title)}.*?$(.*?)(?=^## )", README, re.DOTALL | re.MULTILINE)
    assert match, f"README has no section {title!r}"
    return match[1]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.DOTALL)


def commands(block: str) -> list[list[str]]:
    """One argv per command line: continuation lines joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


def swap(text: str, old: str, new: str) -> str:
    assert old in text, f"the README no longer contains {old!r}: update this test with it"
    return text.replace(old, new)


@pytest.fixture
def workdir(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRL_PLUS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "my_gsm8k.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS * 4) + "\n")
    return tmp_path


def run_cli(argv: list[str], tiny_model_dir: str, budget: bool = True) -> None:
    from trl_plus.cli import main

    assert argv[0] == "trl-plus", argv
    repo = str(Path(__file__).resolve().parents[2])
    argv = [tiny_model_dir if a.startswith("Qwen/") else a.replace("examples/", f"{repo}/examples/", 1)
            if a.startswith("examples/") else a for a in argv[1:]]
    argv = ["my_gsm8k.jsonl" if a == "gsm8k" and i and argv[i - 1] == "--dataset" else a for i, a in enumerate(argv)]
    if argv[0] == "train":
        argv += BUDGET
    if "--config" in argv:  # a GPU recipe: float32 weights on the CPU, room for its overlong buffer of 80 tokens
        argv += ["--dtype", "float32", "--max_completion_length", "96", "--dataset", "my_gsm8k.jsonl",
                 "--max_num_gen_batches", "1"]
    assert main(argv) == 0, argv


@pytest.mark.e2e
def test_quick_start_runs_the_demo(tmp_path):
    bash = blocks(section("Quick start"), "bash")
    steps = [s.strip() for s in bash[0].split("&&")]
    assert steps[:2] == ["python3 -m venv .venv", ". .venv/bin/activate"] and steps[-1] == "trl-plus demo"
    assert steps[-1].replace("trl-plus", "") in bash[1] or "pytest" in bash[1]  # the second command runs the tests
    report = tmp_path / "report.json"
    # The demo's own budget, reduced to seconds; everything else as the README runs it (python -m = trl-plus).
    cmd = [sys.executable, "-m", "trl_plus.cli", *shlex.split(steps[-1])[1:], "--out_dir", str(tmp_path / "demo"),
           "--cache_dir", str(tmp_path / "cache"), "--rl_steps", "2", "--n_test", "8",
           "--report_json", str(report)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["algo"] == "grpo" and data["steps"] == 2 and 0 <= data["accuracy_after"] <= 1
    assert (tmp_path / "demo" / "reward_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "accuracy after RL" in out.stdout


@pytest.mark.e2e
def test_swap_a_trainer_in_runs_as_written(workdir, tiny_model_dir):
    (code,) = blocks(section("Swap a trainer in"), "python")
    code = swap(code, 'load_dataset("openai/gsm8k", "main", split="train")',
                'load_dataset("json", data_files="my_gsm8k.jsonl", split="train").select(range(1))')
    code = swap(code, '"Qwen/Qwen2.5-0.5B-Instruct"', repr(tiny_model_dir))
    scope: dict = {}
    exec(compile(code, "README.md: Swap a trainer in", "exec"), scope)  # noqa: S102 - the README's own code
    trainer = scope["trainer"]
    assert trainer.state.global_step == 3  # 1 prompt x 8 completions, 8 per step, TRL's 3 epochs
    assert [f.__name__ for f in trainer.reward_funcs] == ["gsm8k_format", "gsm8k_correctness"]
    assert type(trainer).__name__ == "ReinforcePlusPlusTrainer" and (workdir / "qwen-rpp").is_dir()


@pytest.mark.e2e
def test_custom_rewards_run_from_python_the_cli_and_yaml(workdir, tiny_model_dir, monkeypatch):
    text = section("Rewards")
    (module,) = [b for b in blocks(text, "python") if b.startswith("# my_rewards.py")]
    (workdir / "my_rewards.py").write_text(module)
    sys.modules.pop("my_rewards", None)
    monkeypatch.syspath_prepend(str(workdir))
    import my_rewards

    chat = [[{"role": "assistant", "content": "9"}], [{"role": "assistant", "content": "4*3=12 so 12"}]]
    assert my_rewards.short_answer(prompts=[None, None], completions=chat) == [0.5, 1 / 13]
    assert my_rewards.shows_work(prompts=[None, None], completions=chat, answer=[r["answer"] for r in ROWS]) == [0, 1]

    (bash,) = blocks(text, "bash")
    (argv,) = commands(bash)
    run_cli([*argv, "--model", tiny_model_dir, "--dataset", "my_gsm8k.jsonl"], tiny_model_dir)
    assert (workdir / "runs" / f"grpo-{Path(tiny_model_dir).name.lower()}" / "model.safetensors").is_file()

    from trl_plus.commands.train import _parse, _rewards

    (recipe,) = blocks(text, "yaml")
    assert yaml.safe_load(recipe)["reward"]
    (workdir / "recipe.yaml").write_text(recipe)
    script, _, _ = _parse("grpo", ["--config", "recipe.yaml"])
    funcs, weights = _rewards(script.reward)
    assert [f.__name__ for f in funcs] == ["short_answer", "gsm8k_correctness", "length_penalty"]
    assert weights == [0.5, 2.0, 0.5]


@pytest.mark.e2e
def test_command_line_section_runs(workdir, tiny_model_dir):
    (bash,) = blocks(section("Command line"), "bash")
    lines = commands(bash)
    assert [a[1] for a in lines] == ["tiny-model", "train", "train", "train", "eval"]
    run_cli(lines[0], tiny_model_dir)  # builds ./tiny-llama, which the next commands train
    assert (workdir / "tiny-llama" / "model.safetensors").is_file()
    for argv in lines[1:4]:
        run_cli(argv, tiny_model_dir)
    assert (workdir / "runs" / "grpo-tiny-llama" / "model.safetensors").is_file()
    assert (workdir / "runs" / "dapo-tiny-llama" / "model.safetensors").is_file()
    recipe_run = workdir / "runs" / f"dapo-{Path(tiny_model_dir).name.lower()}"
    assert (recipe_run / "adapter_config.json").is_file()  # the recipe's LoRA, on the swapped-in model
    data_dir = workdir / "my_gsm8k_dir"
    data_dir.mkdir()
    for split in ("train", "test"):
        (data_dir / f"{split}.jsonl").write_text((workdir / "my_gsm8k.jsonl").read_text())
    eval_argv = [*lines[4], "--limit", "2", "--max_gen_toks", "4", "--output_json", "scores.json"]
    run_cli(eval_argv, tiny_model_dir)
    scores = json.loads((workdir / "scores.json").read_text())
    assert "gsm8k_reasoning" in scores["tasks"]
