"""4-bit QLoRA (bitsandbytes NF4 on CPU) with a LoRA adapter on the real SmolLM2-135M-Instruct, and
`trl-plus eval` running lm-eval's `gsm8k` and our `gsm8k_reasoning` on it."""

from __future__ import annotations

import json

import pytest
import torch

bnb = pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes (pip install bitsandbytes)")
peft = pytest.importorskip("peft")

from transformers import AutoModelForCausalLM
from trl import ModelConfig

from tests.conftest import changed, frozen_snapshot, trainable_snapshot
from trl_plus.algorithms import build_trainer
from trl_plus.cli import main
from trl_plus.data import SYSTEM_PROMPT, generate_problems, to_prompt_dataset
from trl_plus.qlora import model_kwargs_and_peft, use_exact_4bit_matmul

LAYERS, LINEARS_PER_LAYER = 30, 7  # q, k, v, o, gate, up, down; the tied lm_head is not quantised
TARGETS = ["q_proj", "v_proj"]


def checksum(prompts=None, completions=None, **kwargs):
    from reward_fns import completion_text

    return [float(sum(map(ord, completion_text(c))) % 97) / 97 for c in completions]


def packed(model) -> dict:
    return {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}


@pytest.mark.e2e
def test_qlora_step_trains_only_the_adapter_and_it_reloads(real_model_dir, tmp_path):
    from trl_plus.trainers.dr_grpo import DrGRPOConfig

    model_init_kwargs, peft_config = model_kwargs_and_peft(ModelConfig(
        load_in_4bit=True, use_peft=True, lora_r=4, lora_alpha=8, lora_target_modules=TARGETS, dtype="float32"))
    args = DrGRPOConfig(output_dir=str(tmp_path / "run"), use_cpu=True, bf16=False, max_steps=1,
                        per_device_train_batch_size=2, num_generations=2, max_completion_length=8,
                        learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to=[], seed=0,
                        gradient_checkpointing=False, disable_tqdm=True, model_init_kwargs=model_init_kwargs)
    dataset = to_prompt_dataset(generate_problems(2, seed=2), SYSTEM_PROMPT, conversational=True)
    trainer = build_trainer("dr_grpo", model=real_model_dir, reward_funcs=[checksum], args=args,
                            train_dataset=dataset, peft_config=peft_config)

    quantised = packed(trainer.model)
    assert len(quantised) == LAYERS * LINEARS_PER_LAYER
    assert all(w.dtype == torch.uint8 for w in quantised.values())  # packed NF4
    lora = [m for m in trainer.model.modules() if isinstance(m, peft.tuners.lora.Linear4bit)]
    assert len(lora) == LAYERS * len(TARGETS)
    trainable, frozen = trainable_snapshot(trainer.model), frozen_snapshot(trainer.model)
    assert trainable and all("lora_" in n for n in trainable)

    trainer.train()
    assert trainer.state.global_step == 1
    assert any("lora_B" in n for n in changed(trainable, trainer.model))
    assert changed(frozen, trainer.model) == []
    after = packed(trainer.model)
    assert all(torch.equal(after[n], w) for n, w in quantised.items())

    out = tmp_path / "adapter"
    trainer.save_model(str(out))
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    base = AutoModelForCausalLM.from_pretrained(real_model_dir, **model_init_kwargs)
    reloaded = peft.PeftModel.from_pretrained(base, str(out)).eval()
    use_exact_4bit_matmul(reloaded)  # the trainer's numeric path on every CPU (trl_plus.qlora)
    trained = dict(trainer.model.named_parameters())
    lora_params = [(n, p) for n, p in reloaded.named_parameters() if "lora_" in n]
    assert len(lora_params) == 2 * LAYERS * len(TARGETS)
    for n, p in lora_params:
        assert torch.equal(p.detach().to(trained[n].dtype), trained[n].detach()), n
    ids = torch.tensor([trainer.processing_class("What is 12+7?")["input_ids"]])
    trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, trainer.model(input_ids=ids).logits,
                                   atol=2e-2, rtol=0)


@pytest.fixture
def gsm8k_schema_dir(tmp_path):
    """GSM8K-schema train/test files (train feeds gsm8k's 5-shot examples): short generated word problems."""
    folder = tmp_path / "gsm8k"
    folder.mkdir()
    for split, n, seed in (("train", 8, 0), ("test", 4, 1)):
        rows = generate_problems(n, seed=seed, difficulty=2)
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.mark.e2e
def test_eval_runs_gsm8k_and_gsm8k_reasoning(real_model_dir, gsm8k_schema_dir, tmp_path, capsys):
    out = tmp_path / "eval.json"
    argv = ["eval", real_model_dir, "--tasks", "gsm8k,gsm8k_reasoning", "--data-dir", str(gsm8k_schema_dir),
            "--limit", "2", "--batch-size", "2", "--max-gen-toks", "12", "--output-json", str(out)]
    assert main(argv) == 0
    assert "gsm8k_reasoning" in capsys.readouterr().out  # lm-eval's table
    result = json.loads(out.read_text())
    assert set(result["tasks"]) == {"gsm8k", "gsm8k_reasoning"}
    for task in ("gsm8k", "gsm8k_reasoning"):
        filters = result["tasks"][task]
        assert {"strict-match", "flexible-extract"} <= set(filters)
        assert all(0.0 <= f["exact_match"] <= 1.0 for f in filters.values())
        assert result["n_samples"][task]["effective"] == 2
    assert result["n_shot"] == {"gsm8k": 5, "gsm8k_reasoning": 0}
    assert result["settings"]["apply_chat_template"] is True and result["settings"]["max_gen_toks"] == 12
