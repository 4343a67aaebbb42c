"""`trl-plus train pl_reward|listwise_dpo --dataset FILE.jsonl`, in process: training runs and one-line errors."""

import json

import pytest

from trl_plus.cli import main

ROWS = [
    {"prompt": "What is 1+2?\n", "completions": ["#### 3", "#### 4", "#### 33"], "scores": [1.0, 0.0, 0.0]},
    {"prompt": "What is 5+5?\n", "completions": ["#### 11", "#### 10"], "ranking": [1, 0]},
    {"prompt": [{"role": "user", "content": "x"}], "completions": ["a", "b"], "ranking": [0, 1]},
]


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def fast(tmp_path):
    return ["--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--per_device_train_batch_size", "2",
            "--use_cpu", "--gradient_checkpointing", "False", "--save_strategy", "no", "--report_to", "none",
            "--report_json", str(tmp_path / "report.json")]


@pytest.mark.e2e
@pytest.mark.parametrize("algo, extra", [("listwise_dpo", ["--beta", "0.5", "--top-k", "2"]),
                                         ("pl_reward", ["--use_peft", "--lora_r", "4",
                                                        "--lora_target_modules", "q_proj", "v_proj"])])
def test_train_listwise_runs(algo, extra, tiny_model_dir, tmp_path, capsys):
    data = write(tmp_path / "ranked.jsonl", ROWS[:2])
    assert main(["train", algo, "--dataset", data, "--model", tiny_model_dir, *fast(tmp_path), *extra]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["algo"] == algo and report["steps"] == 1
    saved = {p.name for p in (tmp_path / "out").iterdir()}
    assert ("adapter_config.json" if algo == "pl_reward" else "model.safetensors") in saved


def test_recipe_config_with_overrides(tiny_model_dir, tmp_path):
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[2] / "examples" / "recipes" / "listwise_dpo.yaml"
    data = write(tmp_path / "ranked.jsonl", ROWS[:2])
    assert main(["train", "listwise_dpo", "--config", str(recipe), "--dataset", data, "--model", tiny_model_dir,
                 *fast(tmp_path)]) == 0


@pytest.mark.parametrize("algo", ["pl_reward", "listwise_dpo"])
def test_help_lists_listwise_options(algo, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", algo, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for option in ("--dataset", "--top_k", "--use_peft", "--max_length"):
        assert option in out
    assert ("--beta" in out) == (algo == "listwise_dpo")


@pytest.mark.parametrize(
    "rows, extra, message",
    [
        (None, [], "--dataset FILE.jsonl is required"),
        ([ROWS[0], {"prompt": "p", "completions": ["a", "b"], "ranking": [0, 0]}], [],
         "row 1: ranking [0, 0] is not a permutation of 0..1"),
        ([ROWS[0], {"prompt": "p", "completions": ["a"], "ranking": [0]}], [], "row 1: has K=1 completion(s)"),
        ([ROWS[1], {"prompt": "p", "completions": ["a", ""], "scores": [1, 0]}], [], "row 1: completion 1 is empty"),
        ([ROWS[1], {"prompt": "p", "completions": ["a", "b"], "scores": [1, float("nan")]}], [],
         "row 1: scores [1.0, nan] contain NaN"),
        ([ROWS[0], ROWS[1]], ["--top_k", "3"], "row 1: top_k=3 is larger than its K=2"),
        ([ROWS[0]], ["--top_k", "0"], "top_k must be >= 1"),
        ([ROWS[0], ROWS[2]], [], "don't mix plain-text and conversational"),
        ("not json\n", [], "ranked.jsonl:1 is not JSON"),
        ([ROWS[0]], ["--model", "/no/such/model"], "model directory /no/such/model does not exist"),
    ],
    ids=["no-dataset", "not-permutation", "k1", "empty", "nan", "top-k-too-large", "top-k-zero", "mixed-schema",
         "bad-json", "missing-model"],
)
def test_errors_are_one_line_and_name_the_row(rows, extra, message, tiny_model_dir, tmp_path, capsys):
    argv = ["train", "listwise_dpo", "--model", tiny_model_dir, *fast(tmp_path), *extra]
    if rows is not None:
        path = tmp_path / "ranked.jsonl"
        data = path.write_text(rows) and str(path) if isinstance(rows, str) else write(path, rows)
        argv += ["--dataset", data]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("trl-plus train: error:") and message in err[-1], err[-1]


@pytest.mark.e2e
def test_example_offline_smoke():
    import runpy
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "listwise_dpo.py"
    trainer = runpy.run_path(str(example))["main"](["--offline-smoke"])
    assert trainer.state.global_step == 1 and len(trainer.train_dataset) >= 2
