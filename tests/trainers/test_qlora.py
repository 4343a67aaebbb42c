"""4-bit QLoRA (NF4 base + LoRA) for every trl-plus trainer, on CPU with the real bitsandbytes.

The model is given to the trainers as a *path*, with `model_init_kwargs` from
`trl_plus.qlora.model_kwargs_and_peft`, so TRL itself loads it quantised. Each training run checks:
the base linears are `bnb.nn.Linear4bit` with unchanged packed weights, only the LoRA weights move,
the saved adapter reloads onto a freshly 4-bit-loaded base (same weights, same logits) and generates,
and the reference policy is the adapter-disabled base (`ref_model is None`, one model load).
"""

from __future__ import annotations

import contextlib
import sys

import bitsandbytes as bnb  # dependencies of trl-plus: a missing one fails here, it is never skipped
import peft
import pytest
import torch
import trl.trainer.grpo_trainer as trl_grpo_trainer
from transformers import AutoModelForCausalLM, BitsAndBytesConfig
from trl import ModelConfig

import reward_fns
from tests import avx512_bf16
from tests.conftest import changed, frozen_snapshot, trainable_snapshot
from trl_plus.algorithms import ALGORITHMS
from trl_plus.qlora import model_kwargs_and_peft, use_exact_4bit_matmul

# ppo's critic is a second adapter whose frozen-outside-its-pass weights move: tests/trainers/test_ppo_qlora.py.
PLUS_ALGORITHMS = [name for name in ALGORITHMS if name not in ("grpo", "ppo")]
TARGETS = ["q_proj", "v_proj"]
N_LINEARS = 4 * 7  # tiny Llama: 4 layers x (q, k, v, o, gate, up, down); lm_head is tied and never quantised


def model_config(**overrides) -> ModelConfig:
    kwargs = {"load_in_4bit": True, "use_peft": True, "lora_r": 4, "lora_alpha": 8, "lora_target_modules": TARGETS,
                  "dtype": "float32"}
    kwargs.update(overrides)
    return ModelConfig(**kwargs)


def distinct_chars(completions, **kwargs):
    """Outcome reward that varies between samples, so every algorithm gets a learning signal."""
    return [float(len(set(reward_fns.completion_text(c)))) for c in completions]


def whole_completion_step(prompts=None, completions=None, **kwargs):
    """Process reward: the whole completion is one step ending at its last character."""
    texts = [reward_fns.completion_text(c) for c in completions]
    return [[(len(t) - 1, float(len(set(t))))] if t else [] for t in texts]


# Settings that make each algorithm use a reference policy where it can, so the PEFT reference path is
# exercised: a KL term in the loss (dr_grpo), or a KL penalty in the reward (REINFORCE++, ReMax).
OVERRIDES = {
    "dr_grpo": {"beta": 0.04},
    "reinforce_pp": {"kl_coef": 0.1},
    "reinforce_pp_baseline": {"kl_coef": 0.1},
    "remax": {"kl_coef": 0.1},
}
KL_REWARD_METRIC = {"reinforce_pp": "reinforce_pp/kl_reward", "reinforce_pp_baseline": "reinforce_pp/kl_reward"}


def algorithm_classes(name):
    return ALGORITHMS[name].classes()


def linear4bit_modules(model) -> list:
    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def packed_state(model) -> dict:
    """The packed 4-bit weights and their quantisation statistics, per Linear4bit module."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            out[name] = (module.weight.detach().clone(), module.weight.quant_state.absmax.detach().clone())
    return out


def logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


# ----- the helper ------------------------------------------------------------------------------------


def test_model_kwargs_come_from_trl_helpers():
    kwargs, peft_config = model_kwargs_and_peft(model_config(use_bnb_nested_quant=True))
    q = kwargs["quantization_config"]
    assert isinstance(q, BitsAndBytesConfig)
    assert q.load_in_4bit and q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_use_double_quant
    assert q.bnb_4bit_compute_dtype == torch.float32
    assert kwargs["dtype"] == "float32" and "device_map" not in kwargs  # TRL 1.16 places the model itself
    assert isinstance(peft_config, peft.LoraConfig)
    assert (peft_config.r, peft_config.lora_alpha) == (4, 8) and set(peft_config.target_modules) == set(TARGETS)

    plain, no_peft = model_kwargs_and_peft(ModelConfig(dtype="bfloat16"))
    assert "quantization_config" not in plain and plain["dtype"] == "bfloat16" and no_peft is None
    fp4, _ = model_kwargs_and_peft(model_config(bnb_4bit_quant_type="fp4", dtype="bfloat16"))
    assert fp4["quantization_config"].bnb_4bit_quant_type == "fp4"
    assert fp4["quantization_config"].bnb_4bit_compute_dtype == torch.bfloat16


def test_4bit_without_bitsandbytes_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` fail
    with pytest.raises(ImportError, match=r"pip install bitsandbytes") as info:
        model_kwargs_and_peft(model_config())
    assert "\n" not in str(info.value)
    model_kwargs_and_peft(model_config(load_in_4bit=False))  # unquantised LoRA does not need it


@pytest.mark.parametrize(
    ("overrides", "match"),
    [({"use_peft": False}, r"use_peft=True \(--use-peft\)"), ({"dtype": "auto"}, r"dtype='bfloat16'")],
)
def test_4bit_bad_combinations_are_one_line_errors(overrides, match):
    with pytest.raises(ValueError, match=match) as info:
        model_kwargs_and_peft(model_config(**overrides))
    assert "\n" not in str(info.value)


def linear4bit(out_features=64, in_features=128, nested=False) -> bnb.nn.Linear4bit:
    torch.manual_seed(0)
    layer = bnb.nn.Linear4bit(in_features, out_features, compute_dtype=torch.float32, quant_type="nf4")
    layer.weight = bnb.nn.Params4bit(torch.randn(out_features, in_features), requires_grad=False, quant_type="nf4",
                                     compress_statistics=nested)
    return layer.to("cpu")  # quantises


def eval_forward(layer, x) -> torch.Tensor:
    layer.eval()
    with torch.no_grad():
        return layer(x)


def test_avx512_bf16_cpu_repacks_at_an_eval_forward():
    """What use_exact_4bit_matmul guards against: the weight changes in place and the layer computes in bf16."""
    x = torch.randn(3, 128)
    with avx512_bf16.emulated():
        layer = linear4bit()
        packed, exact = layer.weight.detach().clone(), layer(x)
        bf16 = eval_forward(layer, x)
    assert layer.weight.quant_state.packing_format_for_cpu and not torch.equal(layer.weight.detach(), packed)
    assert (bf16 - exact).abs().max() > 1e-2


def test_use_exact_4bit_matmul_keeps_the_weights_and_the_training_path():
    x = torch.randn(3, 128)
    with avx512_bf16.emulated():
        layers = [linear4bit(), linear4bit()]
        assert use_exact_4bit_matmul(torch.nn.Sequential(layers[0]), None, layers[1]) == 2
        packed, exact = layers[0].weight.detach().clone(), layers[0](x)
        assert torch.equal(eval_forward(layers[0], x), exact)
    assert torch.equal(layers[0].weight.detach(), packed)
    assert not getattr(layers[0].weight.quant_state, "packing_format_for_cpu", False)
    assert use_exact_4bit_matmul(torch.nn.Linear(2, 2)) == 0


@pytest.mark.parametrize("nested", [False, True], ids=["absmax", "nested-absmax"])
def test_use_exact_4bit_matmul_unpacks_a_repacked_layer(nested):
    x = torch.randn(3, 128)
    with avx512_bf16.emulated():
        layer = linear4bit(nested=nested)
        packed, exact = layer.weight.detach().clone(), layer(x)
        absmax_dtype = layer.weight.quant_state.absmax.dtype
        eval_forward(layer, x)  # repacked
        assert use_exact_4bit_matmul(layer) == 1
        again = eval_forward(layer, x)
    state = layer.weight.quant_state
    assert torch.equal(layer.weight.detach(), packed) and not state.packing_format_for_cpu
    assert (state.nested, state.absmax.dtype, state.absmax.shape) == (nested, absmax_dtype, (128 * 64 // 64,))
    torch.testing.assert_close(again, exact, atol=0.1, rtol=1e-2)  # the same codes; absmax rounded to bf16


def test_use_exact_4bit_matmul_without_bitsandbytes_is_a_no_op(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    assert use_exact_4bit_matmul(torch.nn.Linear(2, 2)) == 0


# ----- every trainer, 2 steps in 4-bit + LoRA ------------------------------------------------------


# The last column: bitsandbytes as on a CPU with AVX512-BF16 (tests/avx512_bf16.py). ReMax's greedy baseline
# decodes in eval mode, which there repacks the 4-bit weights unless the trainer keeps them exact.
CASES = [pytest.param(name, True, False, id=f"{name}-gc") for name in PLUS_ALGORITHMS] + [
    pytest.param(name, False, False, id=f"{name}-no_gc") for name in ("dr_grpo", "reinforce_pp")
] + [pytest.param("remax", True, True, id="remax-gc-avx512bf16")]


@pytest.fixture
def bnb_cpu(request):
    with avx512_bf16.emulated() if request.param else contextlib.nullcontext():
        yield request.param


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "gradient_checkpointing", "bnb_cpu"), CASES, indirect=["bnb_cpu"])
def test_qlora_trains_only_lora_and_the_adapter_reloads(name, gradient_checkpointing, bnb_cpu, tiny_model_dir,
                                                         addition_dataset, fast_args, tmp_path, monkeypatch):
    config_cls, trainer_cls = algorithm_classes(name)
    model_init_kwargs, peft_config = model_kwargs_and_peft(model_config())

    loads = []  # every model TRL loads from a path: the policy, and a reference model if it built one
    create = trl_grpo_trainer.create_model_from_path
    monkeypatch.setattr(trl_grpo_trainer, "create_model_from_path",
                        lambda *a, **k: loads.append(a[0]) or create(*a, **k))

    settings = {**ALGORITHMS[name].defaults, **OVERRIDES.get(name, {})}
    args = config_cls(**fast_args(model_init_kwargs=model_init_kwargs, gradient_checkpointing=gradient_checkpointing,
                                  max_completion_length=6,
                                  **settings))
    extra = {"process_reward_funcs": [whole_completion_step]} if name == "ps_grpo" else {}
    reward_funcs = None if name == "ps_grpo" else [distinct_chars]
    trainer = trainer_cls(tiny_model_dir, reward_funcs, args, train_dataset=addition_dataset(8),
                          peft_config=peft_config, **extra)

    # The base is 4-bit: every decoder linear is a Linear4bit, the targeted ones wrapped by LoRA.
    assert len(linear4bit_modules(trainer.model)) == N_LINEARS
    lora_layers = [m for m in trainer.model.modules() if isinstance(m, peft.tuners.lora.Linear4bit)]
    assert len(lora_layers) == 4 * len(TARGETS)
    assert all(isinstance(m.base_layer, bnb.nn.Linear4bit) for m in lora_layers)
    assert all(m.weight.dtype == torch.uint8 for m in linear4bit_modules(trainer.model))  # packed NF4
    trainable = trainable_snapshot(trainer.model)
    assert trainable and all("lora_" in n for n in trainable)
    frozen, packed = frozen_snapshot(trainer.model), packed_state(trainer.model)

    trainer.train()
    assert trainer.state.global_step == 2
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in trainer.state.log_history if "loss" in row)
    model = trainer.model
    uses_gc = any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    assert uses_gc == gradient_checkpointing

    # Only LoRA moved; the packed 4-bit weights (and their absmax) are bit-identical.
    moved = changed(trainable, model)
    assert any("lora_B" in n for n in moved), f"no LoRA weight changed: {moved}"
    assert changed(frozen, model) == []
    after = packed_state(model)
    assert after.keys() == packed.keys()
    for key, (weight, absmax) in packed.items():
        assert torch.equal(after[key][0], weight) and torch.equal(after[key][1], absmax), key

    # Reference = the adapter-disabled policy: no reference model, the model was loaded exactly once.
    assert trainer.ref_model is None
    assert loads == [tiny_model_dir]
    assert len(linear4bit_modules(model)) == N_LINEARS
    if name in KL_REWARD_METRIC:  # LoRA B starts at 0: KL is 0 at step 1 and grows once the adapter moved
        kl = [row[KL_REWARD_METRIC[name]] for row in trainer.state.log_history if KL_REWARD_METRIC[name] in row]
        assert kl[0] == pytest.approx(0.0, abs=1e-6) and kl[1] != 0  # k1 estimate: its sign is noise
    if settings.get("beta", 0) > 0:  # TRL's loss KL against the adapter-disabled base
        kl = [row["kl"] for row in trainer.state.log_history if "kl" in row]
        assert len(kl) == 2 and all(torch.isfinite(torch.tensor(kl)))

    # The saved adapter (adapter only: no full weights) reloads onto a freshly 4-bit-loaded base.
    out = tmp_path / "adapter"
    trainer.save_model(str(out))
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, **model_init_kwargs)
    assert len(linear4bit_modules(base)) == N_LINEARS
    kind = bnb_cpu or avx512_bf16.native()
    assert all(m.support_avx512bf16_for_cpu == kind for m in linear4bit_modules(base))  # the CPU kind is on
    assert not any(m.support_avx512bf16_for_cpu for m in linear4bit_modules(model))  # and the trainer's is off
    reloaded = peft.PeftModel.from_pretrained(base, str(out)).eval()
    assert use_exact_4bit_matmul(reloaded) == N_LINEARS  # the trainer's numeric path, to compare like with like
    trained = dict(model.named_parameters())
    for n, p in reloaded.named_parameters():
        if "lora_" in n:
            assert torch.equal(p.detach().to(trained[n].dtype), trained[n].detach()), n

    model.eval()
    ids = torch.tensor([trainer.processing_class("What is 12+7?\n")["input_ids"]])
    with reloaded.disable_adapter(), model.disable_adapter():
        base_logits = logits(reloaded, ids)  # the fresh 4-bit base ...
        torch.testing.assert_close(logits(model, ids), base_logits)  # ... is what the trainer's reference computes
    reloaded_logits = logits(reloaded, ids)
    torch.testing.assert_close(reloaded_logits, logits(model, ids), atol=2e-2, rtol=0)  # LoRA bf16 in training
    assert not torch.equal(reloaded_logits, base_logits)

    tok = trainer.processing_class
    generated = reloaded.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4,
                                  min_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert generated.shape == (1, ids.size(1) + 4)
    assert isinstance(tok.decode(generated[0, ids.size(1):]), str)
