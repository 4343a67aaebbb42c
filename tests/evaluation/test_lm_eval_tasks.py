"""The gsm8k_reasoning task's filters and prompt, and the offline data override of lm-eval's gsm8k."""

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

GSM8K_DIR = Path(__file__).resolve().parents[1] / "data" / "gsm8k"  # the committed sample
GOLD_42 = {"question": "What is 6*7?", "answer": "6*7=<<6*7=42>>42\n#### 42"}


def _task(name, chat=True):
    from eval.harness import _task_manager, task_config

    tm = _task_manager([name])
    return tm.load([task_config(name, tm, data_dir=GSM8K_DIR, chat=chat)])["tasks"][name]


@pytest.fixture(scope="module")
def reasoning_task():
    return _task("gsm8k_reasoning")


def _score(task, completion, doc=GOLD_42):
    """Run the task's filter pipelines and metric on one hand-made completion."""
    inst = SimpleNamespace(resps=[completion], doc=doc, filtered_resps={})
    out = {}
    for ensemble in task._filters:
        ensemble.apply([inst])
        filtered = inst.filtered_resps[ensemble.name]
        out[ensemble.name] = (filtered, task.process_results(doc, [filtered])["exact_match"])
    return out


@pytest.mark.parametrize("completion, strict, flexible", [
    ("<reasoning>\n6*7=42\n</reasoning>\n<answer>\n#### 42\n</answer>", ("42", 1.0), ("42", 1.0)),
    ("<answer>\n#### 42\n", ("42", 1.0), ("42", 1.0)),  # generation stops at </answer>, which is stripped
    ("so 41 then 42", ("[invalid]", 0.0), ("42", 1.0)),
    ("<answer>\n#### 41\n</answer> no wait, 42", ("41", 0.0), ("42", 1.0)),
    ("The answer is $42.", ("[invalid]", 0.0), ("$42.", 1.0)),
    ("no number here", ("[invalid]", 0.0), ("[invalid]", 0.0)),
])
def test_reasoning_filters_score_hand_made_outputs(reasoning_task, completion, strict, flexible):
    scores = _score(reasoning_task, completion)
    assert set(scores) == {"strict-match", "flexible-extract"}
    assert scores["strict-match"] == strict
    assert scores["flexible-extract"] == flexible


def test_reasoning_strict_match_ignores_thousands_commas(reasoning_task):
    doc = {"question": "q", "answer": "x\n#### 1234"}
    assert _score(reasoning_task, "<answer>\n#### 1,234\n</answer>", doc)["strict-match"] == ("1,234", 1.0)


def test_reasoning_task_is_zero_shot_exact_match(reasoning_task):
    cfg = reasoning_task.config
    assert cfg.num_fewshot == 0
    assert [m["metric"] for m in cfg.metric_list] == ["exact_match"]
    assert cfg.dataset_path == "json"  # data_dir override; the YAML itself names the hub dataset
    from lm_eval.tasks._yaml_loader import load_yaml

    from eval.tasks import TASKS_DIR

    raw = load_yaml(TASKS_DIR / "gsm8k_reasoning.yaml", resolve_func=False)
    assert (raw["dataset_path"], raw["dataset_name"]) == ("openai/gsm8k", "main")


def test_reasoning_prompt_is_the_training_prompt(reasoning_task):
    """Chat and plain-text prompts equal what trl_plus.data builds for training, system prompt included."""
    from trl_plus.data import SYSTEM_PROMPT, make_prompt
    from trl_plus.tiny import build_tokenizer

    tok = build_tokenizer()
    doc = reasoning_task.test_docs()[0]

    def chat(msgs, add_generation_prompt=True):
        return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt)

    got = reasoning_task.fewshot_context(doc, 0, apply_chat_template=True, chat_template=chat)
    assert got == chat(make_prompt(doc["question"]))
    assert SYSTEM_PROMPT in got

    plain = _task("gsm8k_reasoning", chat=False)
    doc = plain.test_docs()[0]
    assert plain.fewshot_context(doc, 0) == make_prompt(doc["question"], conversational=False)


def test_gsm8k_data_dir_override_changes_only_the_dataset_location():
    import lm_eval
    from lm_eval.tasks._yaml_loader import load_yaml

    from eval.harness import task_config

    original = load_yaml(Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml", resolve_func=True)
    derived = task_config("gsm8k", data_dir=GSM8K_DIR)
    location = {"dataset_path", "dataset_name", "dataset_kwargs"}
    assert {k: v for k, v in derived.items() if k not in location} == {
        k: v for k, v in original.items() if k not in location}
    assert derived["dataset_path"] == "json" and derived["dataset_name"] is None
    assert derived["dataset_kwargs"]["data_files"] == {
        "train": str((GSM8K_DIR / "train.jsonl").resolve()), "test": str((GSM8K_DIR / "test.jsonl").resolve())}

    task = _task("gsm8k")
    assert task.config.task == "gsm8k" and task.config.num_fewshot == 5
    assert [f.name for f in task._filters] == ["strict-match", "flexible-extract"]
    assert len(task.test_docs()) == 301 and len(task.training_docs()) == 306
