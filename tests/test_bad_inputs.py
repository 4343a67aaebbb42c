"""Bad inputs, each answered by a clear error naming the problem and the fix, or by documented graceful handling
(no NaN in the loss or the weights, no hang, never only a traceback from deep inside a library).

The table in docs/bad-inputs.md lists every case by the id used here. CLI cases run `trl_plus.cli.main([...])`
in-process and expect exit code 2 and one line `trl-plus <cmd>: error: ...`; Python-API cases build tiny trainers
with pinned completions (`tests.conftest.pin_completions`).
"""

from __future__ import annotations

import math
import re
import shutil
import sys
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer

import reward_fns
from tests.conftest import changed, trainable_snapshot
from trl_plus.algorithms import ALGORITHMS, get_algorithm
from trl_plus.cli import main
from trl_plus.data import DataError, generate_problems, load_rows, to_prompt_dataset

TEXTS = ["7", "77", "a", "777"]  # pinned completions: every group of 4 gets these


def sevens(completions, **kwargs):
    return [float(c.count("7")) for c in completions]


def write(tmp, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


def model_without_chat_template(tmp, model: str) -> str:
    target = tmp / "no-template-model"
    shutil.copytree(model, target)
    (target / "chat_template.jinja").unlink(missing_ok=True)
    return str(target)


# ======================================================================================================================
# 1. The command line: exit code 2 and one line naming the problem and the fix
# ======================================================================================================================


@dataclass
class Cli:
    id: str
    argv: Callable  # (tmp_path, model_dir) -> argv
    expect: tuple[str, ...]  # substrings of the error line
    setup: Callable | None = None  # (monkeypatch) -> None


def _train(algo, *options):
    return lambda t, m: ["train", algo, "--model", m, "--output_dir", str(t / "out"), *options]


def _no_bitsandbytes(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # `import bitsandbytes` raises ImportError


def _fake_bitsandbytes(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", types.ModuleType("bitsandbytes"))


CLI_CASES = [
    Cli("unknown-algorithm", lambda t, m: ["train", "ppo2"], ("Unknown algorithm 'ppo2'", "Valid algorithms:")),
    Cli("misspelt-algorithm", lambda t, m: ["train", "reinforce_p"], ("Did you mean reinforce_pp",)),
    Cli("unknown-reward", _train("grpo", "--reward", "gsm8k_corectness"),
        ("unknown reward 'gsm8k_corectness'", "valid names:", "gsm8k_correctness")),
    Cli("reward-weight-not-a-number", _train("grpo", "--reward", "gsm8k_format=abc"),
        ("the weight must be a number", "--reward gsm8k_format=0.5")),
    Cli("process-reward-for-outcome-algorithm", _train("grpo", "--reward", "arithmetic_steps"),
        ("'arithmetic_steps' is a step-level (process) reward", "Train with ps_grpo")),
    Cli("malformed-yaml", lambda t, m: ["train", "grpo", "--config", write(t, "bad.yaml", "learning_rate: [1e-5\n")],
        ("the --config file is not valid YAML", "bad.yaml\", line 1, column 16", "fix the syntax")),
    Cli("yaml-not-a-mapping", lambda t, m: ["train", "grpo", "--config", write(t, "list.yaml", "[1, 2]\n")],
        ("must contain a YAML mapping",)),
    Cli("yaml-unknown-key", lambda t, m: ["train", "grpo", "--config", write(t, "k.yaml", "no_such_key: 3\n")],
        ("unknown key 'no_such_key'", "--help_all")),
    Cli("unknown-option", _train("grpo", "--no_such_flag", "1"), ("unknown option --no_such_flag", "--help")),
    Cli("option-value-not-a-number", _train("grpo", "--learning_rate", "abc"),
        ("argument --learning_rate", "invalid float value: 'abc'", "--help")),
    Cli("option-without-value", _train("grpo", "--max_steps"), ("--max_steps", "expected one argument")),
    Cli("model-path-missing", lambda t, m: ["train", "grpo", "--model", "/no/such/model"],
        ("model directory /no/such/model does not exist", "trl-plus tiny-model DIR")),
    Cli("model-dir-not-a-model", lambda t, m: ["train", "grpo", "--model", str(t), "--output_dir", str(t / "o")],
        ("is not a model directory (no config.json)", "save_pretrained")),
    Cli("data-file-missing", _train("grpo", "--dataset", "/no/such.jsonl"),
        ("/no/such.jsonl does not exist", "pass an existing .jsonl file")),
    Cli("data-not-jsonl", lambda t, m: _train("grpo", "--dataset", write(t, "d.csv", "question,answer\nq,1\n"))(t, m),
        ("d.csv:1 is not JSON", "JSON lines, one object per line")),
    Cli("data-file-empty", lambda t, m: _train("grpo", "--dataset", write(t, "e.jsonl", "\n"))(t, m),
        ("is empty", "at least one row")),
    Cli("missing-answer-column",
        lambda t, m: _train("grpo", "--dataset", write(t, "q.jsonl", '{"question": "1+1?"}\n'))(t, m),
        ("not GSM8K-schema (found ['question'])", "'question' and 'answer'")),
    Cli("answer-without-final-number",
        lambda t, m: _train("grpo", "--dataset", write(t, "h.jsonl", '{"question": "q", "answer": "2"}\n'))(t, m),
        ("no '#### N' final answer",)),
    Cli("non-numeric-gold-answer",
        lambda t, m: _train("grpo", "--dataset",
                            write(t, "n.jsonl", '{"question": "q", "answer": "it is\\n#### two"}\n'))(t, m),
        ("n.jsonl:1", "'two' after '####' is not a number", "write '#### <number>'")),
    Cli("empty-dataset", _train("grpo", "--num_samples", "0"), ("train_dataset has 0 prompts", "Add prompts")),
    Cli("batch-not-divisible-by-G", _train("grpo", "--per_device_train_batch_size", "6", "--num_generations", "4"),
        ("generation_batch_size (6) must be divisible by num_generations (4)",)),
    Cli("one-generation", _train("dapo", "--per_device_train_batch_size", "2", "--num_generations", "1"),
        ("requires at least 2 generations per prompt",)),
    Cli("one-generation-remax", _train("remax", "--per_device_train_batch_size", "2", "--num_generations", "1"),
        ("num_generations=1", "set num_generations=2")),
    Cli("gae-without-critic", _train("grpo", "--advantage_estimator", "gae"),
        ("advantage_estimator='gae' needs a learned critic", "trl-plus train ppo")),
    Cli("epsilon-high-below-epsilon", _train("dapo", "--epsilon_high", "0.1"),
        ("epsilon_high (0.1) must be >= epsilon (0.2)", "Raise epsilon_high")),
    Cli("negative-max-num-gen-batches", _train("dapo", "--max_num_gen_batches", "-1"),
        ("max_num_gen_batches must be >= 0", "0 for no limit")),
    Cli("unknown-dynamic-sampling-metric", _train("dapo", "--dynamic_sampling_metric", "accuracy"),
        ("dynamic_sampling_metric='accuracy' is not one of the reward functions", "gsm8k_correctness")),
    Cli("max-completion-length-zero", _train("grpo", "--max_completion_length", "0"),
        ("max_completion_length must be a positive number of tokens (got 0)",)),
    Cli("max-completion-length-negative", _train("rahf", "--max_completion_length", "-5"),
        ("max_completion_length must be a positive number of tokens (got -5)",)),
    Cli("max-prompt-length-option", _train("grpo", "--max_prompt_length", "64"),
        ("TRL 1.16 has no max_prompt_length and never truncates prompts", "shorten or filter long prompts")),
    Cli("resume-checkpoint-missing", _train("grpo", "--resume_from_checkpoint", "/no/such/checkpoint-2"),
        ("--resume_from_checkpoint /no/such/checkpoint-2 does not exist", "checkpoint-N directory")),
    Cli("load-in-4bit-without-bitsandbytes", _train("grpo", "--load_in_4bit", "true", "--use_peft", "true"),
        ("needs bitsandbytes", "pip install bitsandbytes"), _no_bitsandbytes),
    Cli("load-in-4bit-without-peft", _train("grpo", "--load_in_4bit", "true"),
        ("cannot be trained", "use_peft=True (--use-peft)"), _fake_bitsandbytes),
    Cli("conversational-without-chat-template",
        lambda t, m: ["train", "grpo", "--model", model_without_chat_template(t, m), "--output_dir", str(t / "o")],
        ("the tokenizer has no chat template", "--conversational false")),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_answers_with_one_line_naming_the_fix(case, tmp_path, tiny_model_dir, capsys, monkeypatch):
    if case.setup:
        case.setup(monkeypatch)
    argv = case.argv(tmp_path, tiny_model_dir)
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err[-2000:]
    assert lines[-1].startswith(f"trl-plus {argv[0]}: error: "), err[-2000:]
    for text in case.expect:
        assert text in lines[-1], (text, lines[-1])
    assert "Traceback" not in err


def test_cli_unknown_lm_eval_task(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "gsm8k"
    data.mkdir()
    row = '{"question": "What is 6*7?", "answer": "6*7=<<6*7=42>>42\\n#### 42"}\n'
    (data / "train.jsonl").write_text(row)
    (data / "test.jsonl").write_text(row)
    assert main(["eval", tiny_model_dir, "--tasks", "gsm8k_reasonin", "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("trl-plus eval: error: Unknown task 'gsm8k_reasonin'")
    assert "gsm8k_reasoning" in err and "lm-eval ls tasks" in err


def test_python_module_entry_point_runs(tmp_path):
    """`python -m trl_plus.cli` is what `accelerate launch -m trl_plus.cli` runs (docs/distributed.md)."""
    import subprocess

    out = subprocess.run([sys.executable, "-m", "trl_plus.cli", "train", "--help"], check=False, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "usage: trl-plus train" in out.stdout


def test_python_module_entry_point_reports_user_errors_in_one_line():
    import subprocess

    out = subprocess.run([sys.executable, "-m", "trl_plus.cli", "train", "ppo2"], check=False, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == out.stderr.strip().splitlines()[-1].strip()


# ======================================================================================================================
# 2. Configurations (Python API): ValueError at construction, naming the fix
# ======================================================================================================================

GROUP_METHODS = [a for a in ALGORITHMS if a not in ("grpo",)]


def _config(algo):
    spec = get_algorithm(algo)
    config_cls, _ = spec.classes()  # an ImportError here is a failure: every registered algorithm must import
    return config_cls, spec.defaults


@pytest.mark.parametrize("algo", GROUP_METHODS)
def test_one_generation_is_rejected_for_every_group_method(algo, fast_args):
    config_cls, defaults = _config(algo)
    with pytest.raises(ValueError, match=r"at least 2 (generations|samples) per prompt"):
        config_cls(**fast_args(num_generations=1, per_device_train_batch_size=2), **defaults)


@pytest.mark.parametrize("algo", GROUP_METHODS)
def test_batch_not_divisible_by_num_generations(algo, fast_args):
    config_cls, defaults = _config(algo)
    with pytest.raises(ValueError, match=r"divisible by num_generations"):
        config_cls(**fast_args(per_device_train_batch_size=6, num_generations=4), **defaults)


CONFIG_CASES = [
    ("dapo", {"epsilon": 0.3, "epsilon_high": 0.2}, r"epsilon_high \(0.2\) must be >= epsilon \(0.3\)"),
    ("dapo", {"max_num_gen_batches": -2}, r"max_num_gen_batches must be >= 0 \(got -2\)"),
    ("reinforce_pp", {"kl_estimator": "k9"}, r"kl_estimator='k9' is not a KL estimator: use one of"),
    ("reinforce_pp", {"gamma": 1.5}, r"gamma must be in \[0, 1\]"),
    ("dr_grpo", {"scale_rewards": "group"}, r"leave scale_rewards='none'"),
    ("ps_grpo", {"outcome_weight": -1.0}, r"outcome_weight must be a finite number >= 0"),
]


@pytest.mark.parametrize("algo, overrides, message", CONFIG_CASES,
                         ids=["epsilon-high-below-epsilon", "negative-max-num-gen-batches", "unknown-kl-estimator",
                              "gamma-out-of-range", "dr-grpo-with-std-scaling", "negative-outcome-weight"])
def test_config_values_are_checked(algo, overrides, message, fast_args):
    config_cls, defaults = _config(algo)
    with pytest.raises(ValueError, match=message):
        config_cls(**fast_args(**overrides), **defaults)


@pytest.mark.parametrize("algo", [a for a in GROUP_METHODS if a != "rahf"] + ["rahf"])
@pytest.mark.parametrize("length", [0, -1])
def test_max_completion_length_must_be_positive(algo, length, tiny_model_dir, addition_dataset, fast_args):
    config_cls, defaults = _config(algo)
    from trl_plus.algorithms import build_trainer

    args = config_cls(**fast_args(max_completion_length=length), **defaults)
    with pytest.raises(ValueError, match=rf"max_completion_length must be a positive number of tokens \(got {length}\)"):
        build_trainer(algo, model=tiny_model_dir, reward_funcs=[sevens] if algo != "ps_grpo" else [], args=args,
                      train_dataset=addition_dataset())


# ======================================================================================================================
# 3. Trainer construction (Python API): data, tokenizer and reward checks of the seam (trl_plus.trainers.base)
# ======================================================================================================================


def _rpp(tiny_model_dir, dataset, fast_args, reward=sevens, **kwargs):
    from trl_plus import ReinforcePlusPlusConfig, ReinforcePlusPlusTrainer

    overrides = kwargs.pop("overrides", {})
    return ReinforcePlusPlusTrainer(model=tiny_model_dir, reward_funcs=reward,
                                    args=ReinforcePlusPlusConfig(**fast_args(**overrides)), train_dataset=dataset,
                                    **kwargs)


def test_empty_dataset(tiny_model_dir, fast_args):
    with pytest.raises(ValueError, match=r"train_dataset has 0 prompts, .* Add prompts"):
        _rpp(tiny_model_dir, Dataset.from_list([]), fast_args)


def test_fewer_prompts_than_one_generation_batch(tiny_model_dir, addition_dataset, fast_args):
    with pytest.raises(ValueError, match=r"train_dataset has 1 prompts, but one generation batch needs 2 distinct"):
        _rpp(tiny_model_dir, addition_dataset(1), fast_args, overrides={"per_device_train_batch_size": 8})


def test_conversational_prompts_without_chat_template(tiny_model_dir, addition_dataset, fast_args):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = None
    with pytest.raises(ValueError, match=r"conversational .* no chat template .* --conversational false"):
        _rpp(tiny_model_dir, addition_dataset(conversational=True), fast_args, processing_class=tok)


def test_tokenizer_without_pad_token_falls_back_to_eos(tiny_model_dir, addition_dataset, fast_args, pin):
    """Graceful: TRL pads with the EOS token; training runs."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.pad_token = None
    trainer = _rpp(tiny_model_dir, addition_dataset(), fast_args, processing_class=tok, overrides={"max_steps": 1})
    assert trainer.processing_class.pad_token == tok.eos_token
    pin(trainer, TEXTS)
    trainer.train()
    assert math.isfinite(trainer.state.log_history[0]["loss"])


def test_tokenizer_without_pad_and_eos_tokens(tiny_model_dir, addition_dataset, fast_args):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.pad_token = None
    tok.eos_token = None
    with pytest.raises(ValueError, match=r"neither a pad token nor an EOS token.* set tokenizer.pad_token"):
        _rpp(tiny_model_dir, addition_dataset(), fast_args, processing_class=tok)


@pytest.mark.parametrize("algo", [a for a in GROUP_METHODS if a != "ps_grpo"])
def test_process_reward_given_to_an_outcome_trainer(algo, tiny_model_dir, addition_dataset, fast_args):
    config_cls, defaults = _config(algo)
    from trl_plus.algorithms import build_trainer

    with pytest.raises(ValueError, match=r"'arithmetic_steps' is a step-level \(process\) reward.* ps_grpo"):
        build_trainer(algo, model=tiny_model_dir, reward_funcs=[reward_fns.get("arithmetic_steps")],
                      args=config_cls(**fast_args(), **defaults), train_dataset=addition_dataset())


def test_process_trainer_without_process_reward(tiny_model_dir, addition_dataset, fast_args):
    from trl_plus import ProcessGRPOConfig, ProcessGRPOTrainer

    with pytest.raises(ValueError, match=r"needs at least one process reward function: pass process_reward_funcs"):
        ProcessGRPOTrainer(tiny_model_dir, [sevens], ProcessGRPOConfig(**fast_args()),
                           train_dataset=addition_dataset())


def test_unknown_reward_name_in_the_registry():
    with pytest.raises(KeyError, match=r"unknown reward 'gsm8k_corectness'; valid names: .*gsm8k_correctness"):
        reward_fns.get("gsm8k_corectness")


def test_resume_from_a_missing_checkpoint(tiny_model_dir, addition_dataset, fast_args, tmp_path):
    trainer = _rpp(tiny_model_dir, addition_dataset(), fast_args)
    with pytest.raises(ValueError, match=r"Can't find a valid checkpoint at .*nope"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "nope"))


# ======================================================================================================================
# 4. Reward functions that misbehave during training (pinned completions, one step)
# ======================================================================================================================


def _one_step(trainer, pin):
    pin(trainer, TEXTS)
    before = trainable_snapshot(trainer.model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    row = next(r for r in trainer.state.log_history if "loss" in r)
    return row, before, caught


def boom(completions, **kwargs):
    raise KeyError("no such field")


REWARD_ERRORS = [
    ("wrong-length", lambda completions, **k: [1.0], ValueError,
     r"returned 1 rewards, but 4 were expected .* exactly one reward per completion"),
    ("returns-none-instead-of-a-list", lambda completions, **k: None, ValueError,
     r"returned NoneType; it must return a list with one float per completion \(None to abstain"),
    ("returns-strings", lambda completions, **k: ["1"] * len(completions), ValueError,
     r"returned '1' for completion 0; rewards must be numbers \(None to abstain\)"),
    ("returns-step-lists", lambda completions, **k: [[(0, 1.0)]] * len(completions), ValueError,
     r"rewards must be numbers .* train those with ps_grpo"),
    ("returns-inf", lambda completions, **k: [math.inf if c == "a" else 1.0 for c in completions], ValueError,
     r"returned inf for completion \d; rewards must be finite \(None or NaN abstains\)"),
    ("raises", boom, KeyError, r"no such field"),
]


@pytest.mark.parametrize("reward, error, message", [c[1:] for c in REWARD_ERRORS], ids=[c[0] for c in REWARD_ERRORS])
@pytest.mark.parametrize("algo", ["reinforce_pp", "dr_grpo"])
def test_reward_function_errors_name_the_function(algo, reward, error, message, tiny_model_dir, addition_dataset,
                                                  fast_args, pin):
    config_cls, defaults = _config(algo)
    from trl_plus.algorithms import build_trainer

    trainer = build_trainer(algo, model=tiny_model_dir, reward_funcs=reward,
                            args=config_cls(**fast_args(max_steps=1), **defaults), train_dataset=addition_dataset())
    pin(trainer, TEXTS)
    with pytest.raises(error, match=message) as info:
        trainer.train()
    text = str(info.value) + " ".join(getattr(info.value, "__notes__", []))
    assert "<lambda>" in text or "boom" in text  # the function is named
    if error is KeyError:  # the user's own exception, with a note saying which reward raised and what to do
        assert "raised by the reward function 'boom'" in text and "return None" in text


@pytest.mark.parametrize("value", [None, math.nan], ids=["none-for-everything", "nan-for-everything"])
def test_reward_that_never_scores_trains_nothing_without_nan(value, tiny_model_dir, addition_dataset, fast_args, pin,
                                                            caplog):
    """Graceful: every row is unscorable, so every advantage is 0: loss 0, no update, TRL warns (naming the row)
    and logs the reward as None (not NaN)."""
    trainer = _rpp(tiny_model_dir, addition_dataset(), fast_args,
                   reward=lambda completions, **k: [value] * len(completions), overrides={"max_steps": 1})
    row, before, _ = _one_step(trainer, pin)
    assert row["loss"] == 0.0 and row["grad_norm"] == 0.0 and row["reward"] is None
    assert not changed(before, trainer.model)
    assert "All reward functions returned None" in caplog.text


def test_reward_nan_for_some_rows_leaves_them_out(tiny_model_dir, addition_dataset, fast_args, pin):
    """Graceful: NaN is an abstention like None; the other rows train, nothing becomes NaN."""
    from trl_plus import DAPOConfig, DAPOTrainer

    def partly(completions, **kwargs):
        return [math.nan if c == "a" else float(c.count("7")) for c in completions]

    trainer = DAPOTrainer(model=tiny_model_dir, reward_funcs=partly, args=DAPOConfig(**fast_args(max_steps=1)),
                          train_dataset=addition_dataset())
    row, before, _ = _one_step(trainer, pin)
    assert math.isfinite(row["loss"]) and math.isfinite(row["grad_norm"]) and row["reward"] == pytest.approx(2.0)
    assert changed(before, trainer.model)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_missing_answer_column_for_a_gold_reading_reward(tiny_model_dir, addition_dataset, fast_args, pin):
    trainer = _rpp(tiny_model_dir, addition_dataset().remove_columns("answer"), fast_args,
                   reward=reward_fns.get("gsm8k_correctness"))
    pin(trainer, TEXTS)
    with pytest.raises(ValueError, match=r"gsm8k_correctness needs the dataset column 'answer' .* Rename the gold "
                                         r"column to 'answer' or build the reward with answer_key="):
        trainer.train()


def test_non_numeric_gold_answers(tiny_model_dir, fast_args, pin):
    """Loading a jsonl file rejects them (CLI case `non-numeric-gold-answer`); a Dataset built in Python reaches the
    rewards, where the gold-reading ones abstain (None, one RewardWarning) and the others still score."""
    with pytest.raises(DataError, match=r"'seven' after '####' is not a number"):
        from trl_plus.data import validate_row

        validate_row({"question": "q", "answer": "x\n#### seven"}, "row 1")
    rows = [{"question": f"What is {i}+1?", "answer": "#### seven"} for i in range(4)]
    dataset = to_prompt_dataset(rows, system_prompt=None, conversational=False)
    funcs, weights = reward_fns.preset("gsm8k")
    correctness = reward_fns.get("gsm8k_correctness", exact=2.0)  # a fresh instance: its warn-once state is new
    from trl_plus import ReinforcePlusPlusConfig, ReinforcePlusPlusTrainer

    trainer = ReinforcePlusPlusTrainer(model=tiny_model_dir, reward_funcs=[funcs[0], correctness],
                                       args=ReinforcePlusPlusConfig(**fast_args(max_steps=1, reward_weights=weights)),
                                       train_dataset=dataset)
    row, _, caught = _one_step(trainer, pin)
    assert any(issubclass(w.category, reward_fns.RewardWarning) and "could not read a gold answer" in str(w.message)
               for w in caught)
    assert row["rewards/gsm8k_correctness/mean"] is None  # abstained everywhere
    assert row["rewards/gsm8k_format/mean"] == 0.0 and math.isfinite(row["loss"])


# ======================================================================================================================
# 5. Algorithm-specific inputs
# ======================================================================================================================


def test_process_reward_offsets_out_of_range(tiny_model_dir, addition_dataset, fast_args, pin):
    from trl_plus import ProcessGRPOConfig, ProcessGRPOTrainer

    def past_the_end(completions, **kwargs):
        return [[(len(c), 1.0)] for c in completions]  # one past the last character

    trainer = ProcessGRPOTrainer(tiny_model_dir, None, ProcessGRPOConfig(**fast_args(max_steps=1)),
                                 train_dataset=addition_dataset(), process_reward_funcs=[past_the_end])
    pin(trainer, TEXTS)
    with pytest.raises(ValueError, match=r"'past_the_end', completion 0 \(1 characters\): step offset 1 is outside "
                                         r"the completion.* 0 <= offset < 1 \(for a slice end, return end - 1\)"):
        trainer.train()


@pytest.mark.parametrize("strict", [False, True], ids=["warns-and-trains", "strict-raises"])
def test_dynamic_sampling_with_always_flat_rewards(strict, tiny_model_dir, addition_dataset, fast_args, pin):
    """No hang: the cap stops the rounds; then a warning and a batch whose filler groups train nothing (loss 0, no
    NaN), or, with dynamic_sampling_strict, an error naming the fix."""
    from trl_plus import DAPOConfig, DAPOTrainer

    trainer = DAPOTrainer(model=tiny_model_dir, reward_funcs=lambda completions, **k: [1.0] * len(completions),
                          args=DAPOConfig(**fast_args(max_steps=1, max_num_gen_batches=3,
                                                      dynamic_sampling_strict=strict)),
                          train_dataset=addition_dataset())
    pin(trainer, TEXTS)
    if strict:
        with pytest.raises(RuntimeError, match=r"hit max_num_gen_batches=3: only 0 of the 1 groups .* Raise "
                                               r"max_num_gen_batches"):
            trainer.train()
        return
    before = trainable_snapshot(trainer.model)
    with pytest.warns(UserWarning, match=r"hit max_num_gen_batches=3: only 0 of the 1 groups needed"):
        trainer.train()
    row = next(r for r in trainer.state.log_history if "loss" in r)
    assert row["dapo/gen_rounds"] == 3 and row["loss"] == 0.0 and math.isfinite(row["grad_norm"])
    assert not changed(before, trainer.model)


def test_prompt_longer_than_the_model_context_warns(tiny_model_dir, addition_dataset, fast_args, pin):
    """TRL 1.16 has no max_prompt_length and never truncates: trl-plus warns when prompt + max_completion_length
    exceeds max_position_embeddings (here lowered to 16 so that the 15-token prompts + 8 tokens exceed it)."""
    trainer = _rpp(tiny_model_dir, addition_dataset(), fast_args, overrides={"max_steps": 1})
    trainer.model.config.max_position_embeddings = 16
    pin(trainer, TEXTS)
    with pytest.warns(UserWarning, match=r"exceeds the model's context \(max_position_embeddings=16\); TRL 1.16 does "
                                         r"not truncate prompts .* Shorten or filter the long prompts"):
        trainer.train()
    from trl import GRPOConfig

    with pytest.raises(TypeError, match="max_prompt_length"):  # the option itself is gone from TRL 1.16
        GRPOConfig(**fast_args(max_prompt_length=64))


def test_load_rows_of_the_cli_reject_what_the_rewards_cannot_score(tmp_path):
    path = write(tmp_path, "mixed.jsonl", '{"question": "a", "answer": "#### 1"}\n{"question": "b", "answer": "#### ?"}\n')
    with pytest.raises(DataError, match=re.escape(f"{path}:2: the final answer '?' after '####' is not a number")):
        load_rows(path)
    assert len(generate_problems(3)) == 3  # the generator's rows always pass
