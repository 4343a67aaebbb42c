"""The contract with TRL's and lm-eval's private API: every private name trl-plus relies on, in one place.

trl-plus subclasses TRL's `GRPOTrainer` and overrides or calls its private methods, reads its private
attributes, and imports private helpers of `trl.trainer.utils`; `eval/` uses private modules of lm-eval
(`lm_eval.tasks._index`, `lm_eval.tasks._yaml_loader`). None of these is covered by their authors'
compatibility promises, which is why pyproject.toml pins `trl<1.17` and `lm-eval<0.4.14` (and
`bitsandbytes<0.51`, whose CPU repack switch `trl_plus.qlora` turns off). When an upgrade
moves or changes one of them, the failure shows up here, by name, before any trainer test fails obscurely.

Signatures are checked by parameter names (the prefix trl-plus passes, positionally or by keyword); return
structures by calling the real method on the tiny model.
"""

from __future__ import annotations

import inspect
from collections import deque

import pytest


def params(func) -> list[str]:
    return [p for p in inspect.signature(func).parameters if p != "self"]


# ----- TRL: GRPOTrainer methods that trl-plus overrides (calling super()) or calls -----------------------------
# name -> the leading parameters trl-plus relies on, and where.
GRPO_METHODS = {
    "_generate_and_score_completions": (["inputs"], "trainers/base.py, dapo.py: override, then super()"),
    "_calculate_rewards": (["inputs", "prompts", "completions", "completion_ids_list"],
                           "trainers/base.py: override; remax.py: scores the greedy baseline"),
    "_compute_loss": (["model", "inputs"], "rahf.py (replaces the loss), reinforce_pp.py (super() without k3)"),
    "_get_per_token_logps_and_entropies": (["model", "input_ids", "attention_mask", "logits_to_keep", "batch_size",
                                            "compute_entropy"], "base.py, rahf.py, reinforce_pp.py"),
    "_generate": (["prompts"], "remax.py: the greedy rollout through TRL's generation path"),
    "_generate_single_turn": (["prompt_ids", "images", "multimodal_fields", "num_generations"],
                              "remax.py; tests' pin_completions"),
    # transformers.Trainer's, through GRPOTrainer
    "_save_checkpoint": (["model", "trial"], "base.py: writes trl_plus_state.pt next to the checkpoint"),
    "_get_output_dir": (["trial"], "base.py: the checkpoint folder"),
    "_load_rng_state": (["checkpoint"], "base.py: restores trl-plus's RNG state on resume"),
    "_load_optimizer_and_scheduler": (["checkpoint"], "base.py: the same, on every resume"),
}


@pytest.mark.parametrize("name", list(GRPO_METHODS))
def test_grpo_trainer_private_method(name):
    from trl import GRPOTrainer

    expected, used_in = GRPO_METHODS[name]
    method = getattr(GRPOTrainer, name, None)
    assert callable(method), f"trl.GRPOTrainer.{name} is gone (used in trl_plus/{used_in})"
    got = params(method)
    assert got[: len(expected)] == expected, f"GRPOTrainer.{name}{inspect.signature(method)} (used in {used_in})"


def test_grpo_trainer_tag_names_is_a_class_list():
    from trl import GRPOTrainer

    assert isinstance(GRPOTrainer._tag_names, list) and "grpo" in GRPOTrainer._tag_names


# ----- TRL: helpers -------------------------------------------------------------------------------------------
def test_trl_trainer_utils_helpers():
    import torch
    from trl.trainer.utils import get_callable_name, is_async_callable, pad

    assert params(pad)[:3] == ["tensors", "padding_value", "padding_side"]
    padded = pad([torch.tensor([1, 2]), torch.tensor([3])], padding_value=0, padding_side="right")
    assert padded.tolist() == [[1, 2], [3, 0]]

    async def scored(completions, **kwargs):
        return [0.0]

    def plain(completions, **kwargs):
        return [0.0]

    assert get_callable_name(plain) == "plain" and is_async_callable(scored) and not is_async_callable(plain)


def test_trl_quantization_and_peft_config_builders():
    from trl import ModelConfig, get_peft_config, get_quantization_config

    assert params(get_quantization_config) == ["model_args"] and params(get_peft_config) == ["model_args"]
    q = get_quantization_config(ModelConfig(load_in_4bit=True, use_bnb_nested_quant=True, dtype="float32"))
    assert (q.load_in_4bit, q.bnb_4bit_quant_type, q.bnb_4bit_use_double_quant) == (True, "nf4", True)


def test_bitsandbytes_cpu_repack_switch():
    """trl_plus.qlora.use_exact_4bit_matmul turns bitsandbytes' CPU repack off and undoes a repack."""
    import bitsandbytes as bnb
    import torch
    from bitsandbytes.functional import _convert_weight_packed_for_cpu, _convert_weight_packed_for_cpu_inverse

    assert params(_convert_weight_packed_for_cpu_inverse)[:2] == ["packed_weight", "quant_state"]
    layer = bnb.nn.Linear4bit(64, 32, compute_dtype=torch.float32)
    assert hasattr(layer, "support_avx512bf16_for_cpu")  # set at __init__, read by Linear4bit.forward
    forward = inspect.getsource(bnb.nn.Linear4bit.forward)
    assert "support_avx512bf16_for_cpu" in forward and "_convert_weight_packed_for_cpu" in forward
    assert "packing_format_for_cpu" in inspect.getsource(_convert_weight_packed_for_cpu)


# ----- TRL: private state and return structures, on a real trainer ----------------------------------------------
@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    from trl import GRPOConfig, GRPOTrainer

    from trl_plus.data import generate_problems, to_prompt_dataset
    from trl_plus.tiny import build_tiny_model

    model, tok = build_tiny_model()
    args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp("contract")), use_cpu=True, bf16=False,
                      per_device_train_batch_size=4, num_generations=4, max_completion_length=4, report_to=[],
                      gradient_checkpointing=False)
    return GRPOTrainer(model=model, processing_class=tok, args=args,
                       train_dataset=to_prompt_dataset(generate_problems(4)),
                       reward_funcs=lambda completions, **kw: [float(len(str(c))) for c in completions])


def test_grpo_trainer_private_attributes(trainer):
    # base.py and process_grpo.py/remax.py log through _metrics[mode][name]; base.py rewrites _logs["advantages"];
    # remax.py clears the pending reward-function logs of its greedy pass; dapo.py/process_grpo.py use _tokenizer.
    assert set(trainer._metrics) == {"train", "eval"}
    trainer._metrics["train"]["contract/x"].append(1.0)
    assert isinstance(trainer._logs["advantages"], deque)
    for name in ("_pending_extra_logs", "_pending_metrics"):
        assert hasattr(getattr(trainer, name), "clear"), name
    assert trainer._tokenizer is trainer.processing_class and trainer._tokenizer.pad_token_id is not None


def test_generation_and_scoring_return_structures(trainer):
    import torch

    inputs = [trainer.train_dataset[i] for i in range(4)]
    trainer.model.train()
    out = trainer._generate_and_score_completions(inputs)
    for key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages", "num_items_in_batch"):
        assert key in out, f"_generate_and_score_completions no longer returns {key!r}"
    assert out["advantages"].shape == (4,)

    # remax.py unpacks `_, completion_ids, _, completions, *_ = self._generate(prompts)`
    prompts = [x["prompt"] for x in inputs]
    generated = trainer._generate(prompts)
    assert isinstance(generated, tuple) and len(generated) >= 4
    completion_ids, completions = generated[1], generated[3]
    assert len(completion_ids) == len(completions) == 4 and all(isinstance(c, list) for c in completion_ids)
    rewards = trainer._calculate_rewards(inputs, prompts, completions, completion_ids)
    assert rewards.shape == (4, 1)

    # rahf.py and base.py unpack three values: (log-probs (B, T), entropies or None, aux or None)
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], 1)
    mask = torch.cat([out["prompt_mask"], out["completion_mask"]], 1)
    T = out["completion_ids"].size(1)
    with torch.no_grad():
        logps, entropies, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, T, batch_size=4)
    assert logps.shape == (4, T) and entropies is None

    # tests/conftest.py pin_completions replaces _generate_single_turn: it must return (ids per row, logprobs)
    prompt_ids = [trainer.processing_class("What is 1+1?")["input_ids"]]
    ids_rows, _ = trainer._generate_single_turn(prompt_ids, None, {}, 1)
    assert len(ids_rows) == 1 and all(isinstance(t, int) for t in ids_rows[0])


# ----- lm-eval ------------------------------------------------------------------------------------------------
def test_lm_eval_private_task_modules():
    from lm_eval.tasks._index import Entry, Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    # eval/harness.py: Kind.TASK / Kind.PY_TASK, Entry(name=, kind=, yaml_path=), load_yaml(path, resolve_func=)
    assert {"TASK", "PY_TASK", "GROUP", "TAG"} <= set(Kind.__members__)
    assert params(Entry)[:3] == ["name", "kind", "yaml_path"]
    assert params(load_yaml)[:2] == ["path", "resolve_func"]


def test_lm_eval_task_manager_and_loader():
    from pathlib import Path

    import lm_eval.tasks
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._index import Kind
    from lm_eval.tasks._yaml_loader import load_yaml

    assert {"include_path", "include_defaults"} <= set(params(TaskManager.__init__))
    gsm8k_dir = Path(lm_eval.tasks.__file__).parent / "gsm8k"
    tm = TaskManager(include_path=[str(gsm8k_dir)], include_defaults=False)
    entry = tm.task_index["gsm8k"]
    assert entry.kind is Kind.TASK and entry.yaml_path == gsm8k_dir / "gsm8k.yaml"
    cfg = load_yaml(entry.yaml_path, resolve_func=True)
    # eval/tasks/gsm8k_reasoning.yaml repeats lm-eval's gsm8k scoring (an `include:` cannot reach lm-eval's
    # folder from ours in every install): the two must stay equal.
    ours_path = Path(__file__).resolve().parents[1] / "eval" / "tasks" / "gsm8k_reasoning.yaml"
    ours = load_yaml(ours_path, resolve_func=False)
    assert ours["filter_list"] == cfg["filter_list"] and ours["metric_list"] == cfg["metric_list"]
    assert (cfg["dataset_path"], cfg["dataset_name"]) == ("openai/gsm8k", "main")
    # eval/harness.py loads a config dict with only the dataset location replaced, and reads "tasks"/"groups"
    data = Path(__file__).resolve().parent / "data" / "gsm8k"
    files = {split: str(data / f"{split}.jsonl") for split in ("train", "test")}
    loaded = tm.load([{**cfg, "dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": files}}])
    assert {"tasks", "groups"} <= set(loaded) and not loaded["groups"]
    assert len(loaded["tasks"]["gsm8k"].test_docs()) == 301


def test_lm_eval_public_entry_points_take_what_eval_passes():
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.utils import make_table, simple_parse_args_string

    passed = {"model", "tasks", "num_fewshot", "limit", "task_manager", "apply_chat_template", "system_instruction",
              "gen_kwargs", "log_samples", "fewshot_as_multiturn"}
    assert passed <= set(params(simple_evaluate))
    assert {"pretrained", "tokenizer", "batch_size"} <= set(params(HFLM.__init__))
    assert simple_parse_args_string("max_gen_toks=4,do_sample=False") == {"max_gen_toks": 4, "do_sample": False}
    assert callable(make_table)
