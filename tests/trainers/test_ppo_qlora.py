"""PPO under 4-bit QLoRA on CPU (real bitsandbytes NF4): one 4-bit base, two LoRA adapters (policy and critic).

The critic of a PEFT policy is a second adapter ("critic") on the policy's own base plus a value head, so the
model is loaded once. Training must move both adapters and the head and leave the packed 4-bit weights
bit-identical; the saved critic is a PEFT adapter folder with its value head.
"""

from __future__ import annotations

import pytest
import torch

bnb = pytest.importorskip("bitsandbytes", reason="QLoRA tests need bitsandbytes (pip install bitsandbytes)")
peft = pytest.importorskip("peft")

import trl.trainer.grpo_trainer as trl_grpo_trainer
from transformers import AutoModelForCausalLM
from trl import ModelConfig

from tests.conftest import frozen_snapshot
from tests.trainers.test_qlora import distinct_chars, packed_state
from trl_plus import PPOConfig, PPOTrainer
from trl_plus.critic import ADAPTER, HEAD_FILE
from trl_plus.qlora import model_kwargs_and_peft, use_exact_4bit_matmul

pytestmark = pytest.mark.e2e


def test_qlora_trains_both_adapters_on_one_4bit_base(tiny_model_dir, addition_dataset, fast_args, tmp_path,
                                                      monkeypatch):
    model_init_kwargs, peft_config = model_kwargs_and_peft(ModelConfig(
        load_in_4bit=True, use_peft=True, lora_r=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"],
        dtype="float32"))
    loads = []
    create = trl_grpo_trainer.create_model_from_path
    monkeypatch.setattr(trl_grpo_trainer, "create_model_from_path",
                        lambda *a, **k: loads.append(a[0]) or create(*a, **k))
    args = PPOConfig(**fast_args(model_init_kwargs=model_init_kwargs, gradient_checkpointing=True,
                                 max_completion_length=6, kl_coef=0.1, temperature=1.0))
    trainer = PPOTrainer(tiny_model_dir, [distinct_chars], args, train_dataset=addition_dataset(8),
                         peft_config=peft_config)
    model = trainer.model
    assert loads == [tiny_model_dir] and trainer.ref_model is None  # one base: policy, reference and critic
    assert set(model.peft_config) == {"default", ADAPTER} and model.active_adapter == "default"
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    policy_lora = [n for n in lora if ".default." in n]
    critic_lora = [n for n in lora if f".{ADAPTER}." in n]
    assert len(policy_lora) == len(critic_lora) > 0
    # Outside the critic's own passes only the policy's adapter is trainable (the policy optimizer never sees it).
    assert all(p.requires_grad == (".default." in n) for n, p in model.named_parameters() if "lora_" in n)
    head = trainer.critic.head.weight.detach().clone()
    frozen = {n: p for n, p in frozen_snapshot(model).items() if "lora_" not in n}
    packed = packed_state(model)

    trainer.train()
    assert trainer.state.global_step == 2
    params = dict(model.named_parameters())
    moved = [n for n in lora if not torch.equal(lora[n], params[n].detach())]
    assert any(".default." in n and "lora_B" in n for n in moved), moved
    assert any(f".{ADAPTER}." in n and "lora_B" in n for n in moved), moved
    assert not torch.equal(head, trainer.critic.head.weight)
    assert [n for n, p in frozen.items() if not torch.equal(p, params[n].detach())] == []
    after = packed_state(model)
    for key, (weight, absmax) in packed.items():
        assert torch.equal(after[key][0], weight) and torch.equal(after[key][1], absmax), key
    assert model.active_adapter == "default"
    kl = [row["ppo/kl"] for row in trainer.state.log_history if "ppo/kl" in row]
    assert kl[0] == pytest.approx(0.0, abs=1e-6) and kl[1] != 0  # reference = adapter-disabled base

    # The critic is saved as a PEFT adapter + value head; it reloads onto a fresh 4-bit base with the same values.
    out = tmp_path / "final"
    trainer.save_model(str(out))
    critic_dir = out / "critic"
    assert (critic_dir / "adapter_model.safetensors").is_file() and (critic_dir / HEAD_FILE).is_file()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, **model_init_kwargs)
    reloaded = peft.PeftModel.from_pretrained(base, str(critic_dir)).eval()
    use_exact_4bit_matmul(reloaded)  # the trainer's numeric path on every CPU (trl_plus.qlora)
    model.eval()
    ids = torch.tensor([trainer.processing_class("What is 12+7?\n")["input_ids"]])
    with torch.no_grad(), trainer.critic.active():
        want = trainer.critic.values(ids, torch.ones_like(ids), 3)
        hidden = reloaded.get_base_model().model(input_ids=ids).last_hidden_state[:, -4:-1]
        got = trainer.critic.head(hidden.float()).squeeze(-1)
    torch.testing.assert_close(got, want, atol=2e-2, rtol=0)
