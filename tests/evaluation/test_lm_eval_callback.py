"""LmEvalCallback during a 2-step GRPO run on the tiny model: metrics reach log_history, errors do not stop training."""

import json
import logging
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

GSM8K_DIR = Path(__file__).resolve().parents[1] / "data" / "gsm8k"  # the committed sample
PREFIX = "lm_eval/gsm8k_reasoning/"


def reward_length(completions, **kwargs):
    return [float(len(str(c))) for c in completions]


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One 2-step training, saving at step 2, with a working callback evaluating at saves and a broken one
    evaluating every step."""
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from eval import LmEvalCallback
    from trl_plus.data import generate_problems, to_prompt_dataset
    from trl_plus.tiny import build_tiny_model

    class ModeProbe(TrainerCallback):  # runs after LmEvalCallback at each step end
        def __init__(self):
            self.modes = []

        def on_step_end(self, args, state, control, model=None, **kwargs):
            self.modes.append(model.training)

    out = tmp_path_factory.mktemp("grpo")
    model, tok = build_tiny_model()
    args = GRPOConfig(output_dir=str(out), use_cpu=True, bf16=False, max_steps=2, per_device_train_batch_size=4,
                      num_generations=4, max_completion_length=8, report_to=[], logging_steps=1,
                      save_strategy="steps", save_steps=2)
    trainer = GRPOTrainer(model=model, processing_class=tok, reward_funcs=reward_length, args=args,
                          train_dataset=to_prompt_dataset(generate_problems(8)))
    good = LmEvalCallback(trainer, "gsm8k_reasoning", on_save=True, on_train_end=True, limit=2, data_dir=GSM8K_DIR,
                          max_gen_toks=4)
    probe = ModeProbe()
    broken = LmEvalCallback(trainer, "gsm8k_reasonin", eval_steps=1, limit=2, data_dir=GSM8K_DIR)
    for callback in (good, probe, broken):
        trainer.add_callback(callback)

    records = _Records()
    logging.getLogger("eval.callback").addHandler(records)
    try:
        trainer.train()
    finally:
        logging.getLogger("eval.callback").removeHandler(records)
    trainer.save_state()
    return {"trainer": trainer, "good": good, "probe": probe, "errors": records.messages, "out": out}


@pytest.mark.e2e
def test_callback_metrics_land_in_log_history(run):
    trainer = run["trainer"]
    assert trainer.state.global_step == 2
    evals = [e for e in trainer.state.log_history if any(k.startswith(PREFIX) for k in e)]
    assert [e["step"] for e in evals] == [2]  # at the save; on_save and on_train_end do not repeat step 2
    for e in evals:
        for filt in ("strict-match", "flexible-extract"):
            assert 0.0 <= e[f"{PREFIX}exact_match,{filt}"] <= 1.0
            assert f"{PREFIX}exact_match_stderr,{filt}" in e
    # the trainer's own per-step logs still happen, with GRPO's running metrics kept out of ours
    own = [e for e in trainer.state.log_history if "loss" in e]
    assert [e["step"] for e in own] == [1, 2] and all("reward" in e for e in own)
    assert not any("reward" in e for e in evals)
    for state_file in (run["out"] / "trainer_state.json", run["out"] / "checkpoint-2" / "trainer_state.json"):
        saved = json.loads(state_file.read_text())["log_history"]  # the checkpoint records its own score
        assert sum(1 for e in saved if f"{PREFIX}exact_match,strict-match" in e) == 1


@pytest.mark.e2e
def test_callback_restores_train_mode(run):
    assert run["probe"].modes == [True, True]  # checked after LmEvalCallback, which evaluated at step 2


@pytest.mark.e2e
def test_broken_task_name_does_not_stop_training(run):
    errors = [m for m in run["errors"] if "gsm8k_reasonin'" in m]
    assert len(errors) == 2  # steps 1 and 2; training went on both times
    assert "evaluation at step 1 failed, training continues" in errors[0]
    assert "Unknown task 'gsm8k_reasonin'" in errors[0] and "did you mean" in errors[0]


class _FakeState:
    """Stands in for accelerate.PartialState in a 2-process run."""

    def __init__(self, main):
        self.num_processes, self.is_main_process, self.barriers = 2, main, 0

    def wait_for_everyone(self):
        self.barriers += 1


@pytest.mark.parametrize("main", [True, False])
def test_only_the_main_process_evaluates_and_all_reach_the_barrier(monkeypatch, main):
    from types import SimpleNamespace

    import accelerate
    from transformers import TrainerControl, TrainerState

    import eval.callback as callback_module
    from eval import LmEvalCallback

    fake = _FakeState(main)
    monkeypatch.setattr(accelerate, "PartialState", lambda: fake)
    calls = []

    def failing_evaluate(*args, **kwargs):  # the barrier must be reached even when evaluation fails
        calls.append(args)
        raise RuntimeError("boom")

    monkeypatch.setattr(callback_module, "evaluate", failing_evaluate)
    model = SimpleNamespace(training=True, train=lambda mode=True: None)
    cb = LmEvalCallback(SimpleNamespace(), "gsm8k_reasoning", eval_steps=1)
    state, control = TrainerState(), TrainerControl()
    state.global_step = 1
    cb.on_step_end(SimpleNamespace(fsdp=""), state, control, model=model, processing_class=object())
    assert len(calls) == (1 if main else 0)
    assert fake.barriers == 1
    assert state.log_history == []


@pytest.mark.parametrize("tasks_first", ["gsm8k_reasoning", ["gsm8k_reasoning"], None])
def test_the_trainer_comes_first(tasks_first):
    from eval import LmEvalCallback

    with pytest.raises(TypeError, match=r"takes the trainer first.*trainer.add_callback\(LmEvalCallback\(trainer"):
        LmEvalCallback(tasks_first, eval_steps=1)


@pytest.mark.e2e
def test_no_data_dir_and_no_network_fails_fast_and_training_continues(tmp_path, monkeypatch):
    """Hub mode on (HF_HUB_OFFLINE unset) but no Hub to reach: one failed connection, then the local cache
    only, instead of 5 retries with backoff per dataset file (about 30 s)."""
    import time

    import datasets.config
    from huggingface_hub import constants
    from trl import GRPOConfig, GRPOTrainer

    from eval import LmEvalCallback
    from trl_plus.data import generate_problems, to_prompt_dataset
    from trl_plus.tiny import build_tiny_model

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # empty caches: nothing to fall back on
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    model, tok = build_tiny_model()
    args = GRPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, max_steps=1,
                      per_device_train_batch_size=4, num_generations=4, max_completion_length=4, report_to=[],
                      save_strategy="no", disable_tqdm=True)
    trainer = GRPOTrainer(model=model, processing_class=tok, reward_funcs=reward_length, args=args,
                          train_dataset=to_prompt_dataset(generate_problems(4)))
    trainer.add_callback(LmEvalCallback(trainer, "gsm8k_reasoning", limit=2, max_gen_toks=4))
    records = _Records()
    logging.getLogger("eval.callback").addHandler(records)
    start = time.perf_counter()
    try:
        trainer.train()
    finally:
        logging.getLogger("eval.callback").removeHandler(records)
    seconds = time.perf_counter() - start
    assert trainer.state.global_step == 1
    [error] = records.messages
    assert "training continues" in error and "not reachable" in error and "data_dir" in error
    assert seconds < 20, f"took {seconds:.0f} s: the Hub was retried"
