"""Every algorithm trains a step on the real SmolLM2-135M-Instruct, through the CLI and through Python, with the
model's own chat template, and saves a checkpoint that reloads to exactly the trained weights.

Kept cheap: 1 step, 1 prompt x 2 completions of at most 8 tokens, short synthetic problems. The reward, a
checksum of the completion's characters in [0, 1) (below REINFORCE++'s reward clip of 10, which would make
larger rewards equal), differs between two different completions, so every algorithm gets a non-zero
advantage and the weights must move.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

import reward_fns
import trl_plus.algorithms as algorithms
from trl_plus.algorithms import ALGORITHMS, build_trainer
from trl_plus.cli import main
from trl_plus.data import SYSTEM_PROMPT, generate_problems, to_prompt_dataset

SETTINGS = {"max_steps": 1, "per_device_train_batch_size": 2, "num_generations": 2, "max_completion_length": 8,
            "learning_rate": 1e-5, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
            "gradient_checkpointing": False, "seed": 0}
CHAT_PROMPT_START = "<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n<|im_start|>user\nWhat is "


def checksum(prompts=None, completions=None, **kwargs):
    return [float(sum(map(ord, reward_fns.completion_text(c))) % 97) / 97 for c in completions]


def checksum_step(prompts=None, completions=None, **kwargs):
    """Process reward: the whole completion is one step."""
    texts = [reward_fns.completion_text(c) for c in completions]
    return [[(len(t) - 1, float(sum(map(ord, t)) % 97) / 97)] if t else [] for t in texts]


reward_fns.register("real_model_test_checksum", checksum, overwrite=True)
reward_fns.register("real_model_test_checksum_step", checksum_step, process=True, overwrite=True)


@pytest.fixture(scope="module")
def base_weights(real_model_dir):
    return load_file(f"{real_model_dir}/model.safetensors")


def record_prompts(trainer, tokenizer, seen: list):
    """Record the prompt text of every generation call (TRL's lowest generation hook), then generate as usual."""
    generate = trainer._generate_single_turn

    def recording(prompt_ids, *args, **kwargs):
        seen.extend(tokenizer.decode(ids) for ids in prompt_ids)
        return generate(prompt_ids, *args, **kwargs)

    trainer._generate_single_turn = recording


def check_trained_and_saved(trainer, out, real_model_dir, base_weights, prompts):
    assert trainer.state.global_step == 1
    assert prompts and all(p.startswith(CHAT_PROMPT_START) and p.endswith("<|im_start|>assistant\n") for p in prompts)
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    trained = {k: v.detach() for k, v in trainer.model.state_dict().items()}
    saved = reloaded.state_dict()
    assert saved.keys() == trained.keys()
    assert all(torch.equal(saved[k], trained[k]) for k in saved)
    moved = [k for k, v in base_weights.items() if not torch.equal(v, saved[k])]
    assert moved, "training changed no weight"
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template == AutoTokenizer.from_pretrained(real_model_dir).chat_template


@pytest.mark.e2e
@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_cli_trains_and_saves(name, real_model_dir, base_weights, tmp_path, monkeypatch):
    built, prompts = [], []
    real_build = algorithms.build_trainer

    def capture(*args, **kwargs):  # the CLI's trainer, to compare its weights with the saved checkpoint
        trainer = real_build(*args, **kwargs)
        record_prompts(trainer, trainer.processing_class, prompts)
        built.append(trainer)
        return trainer

    monkeypatch.setattr(algorithms, "build_trainer", capture)
    out, report = tmp_path / "out", tmp_path / "report.json"
    reward = "real_model_test_checksum_step" if name == "ps_grpo" else "real_model_test_checksum"
    argv = ["train", name, "--model", real_model_dir, "--dataset", "synthetic", "--num_samples", "2",
            "--reward", reward, "--output_dir", str(out), "--report_json", str(report), "--disable_tqdm", "True"]
    for key, value in SETTINGS.items():
        argv += [f"--{key}", str(value)]
    assert main(argv) == 0
    assert json.loads(report.read_text())["steps"] == 1
    check_trained_and_saved(built[0], out, real_model_dir, base_weights, prompts)


@pytest.mark.e2e
@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_python_trains_and_saves(name, real_model_dir, base_weights, tmp_path):
    config_cls, _ = ALGORITHMS[name].classes()
    settings = {**SETTINGS, "report_to": [], "bf16": False, "use_cpu": True, "disable_tqdm": True,
                **ALGORITHMS[name].defaults}
    args = config_cls(output_dir=str(tmp_path / "run"), **settings)
    dataset = to_prompt_dataset(generate_problems(2, seed=1), SYSTEM_PROMPT, conversational=True)
    if name == "ps_grpo":
        trainer = build_trainer(name, model=real_model_dir, reward_funcs=None, process_reward_funcs=[checksum_step],
                                args=args, train_dataset=dataset)
    else:
        trainer = build_trainer(name, model=real_model_dir, reward_funcs=[checksum], args=args, train_dataset=dataset)
    prompts = []
    record_prompts(trainer, trainer.processing_class, prompts)
    trainer.train()
    out = tmp_path / "saved"
    trainer.save_model(str(out))
    check_trained_and_saved(trainer, out, real_model_dir, base_weights, prompts)
