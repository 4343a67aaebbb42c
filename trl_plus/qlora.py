"""QLoRA for every trl-plus trainer, through TRL's own `ModelConfig` helpers.

`model_kwargs_and_peft(ModelConfig(...))` turns TRL's model arguments into the two things a
trl-plus (or TRL) GRPO-family trainer needs:

    from trl import ModelConfig
    from trl_plus import DrGRPOConfig, DrGRPOTrainer
    from trl_plus.qlora import model_kwargs_and_peft

    model_config = ModelConfig(load_in_4bit=True, use_peft=True, lora_r=16, lora_alpha=32,
                               lora_target_modules="all-linear", dtype="bfloat16")
    model_init_kwargs, peft_config = model_kwargs_and_peft(model_config)
    args = DrGRPOConfig(output_dir="out", model_init_kwargs=model_init_kwargs, ...)
    trainer = DrGRPOTrainer("Qwen/Qwen2.5-1.5B-Instruct", reward_funcs, args,
                            train_dataset=..., peft_config=peft_config)   # model given by *path*

The model must be given as a path/hub id (not an instance) so that TRL loads it with
`model_init_kwargs`, i.e. already quantised. The base stays frozen in 4-bit NF4
(`bitsandbytes.nn.Linear4bit`); only the LoRA matrices train. Under PEFT the reference policy
(used when `beta > 0`, or for the KL-in-reward of REINFORCE++/ReMax with `kl_coef > 0`) is the
same model with its adapter disabled, as TRL does: `trainer.ref_model is None` and no second
4-bit copy is loaded.

Where each piece comes from (nothing is re-implemented):
- `quantization_config`: `trl.get_quantization_config` (NF4/FP4 from `bnb_4bit_quant_type`,
  nested quantisation from `use_bnb_nested_quant`, compute dtype = `dtype`).
- `peft_config`: `trl.get_peft_config` (`lora_r`, `lora_alpha`, `lora_dropout`,
  `lora_target_modules`, `use_rslora`, `use_dora`, `lora_modules_to_save`, ...).
- `dtype`, `revision`, `attn_implementation`: copied as TRL's `trl grpo` script does.
- `device_map`: TRL 1.16 no longer ships `get_kbit_device_map`. Its replacement is built in:
  `create_model_from_path` picks None on CPU/MPS and "auto" on a single GPU, `GRPOTrainer` forces
  None under DDP/DeepSpeed, and transformers' bitsandbytes quantizer turns None into
  `{"": torch.cuda.current_device()}`, i.e. each process's own GPU (what `get_kbit_device_map`
  returned). So no `device_map` is set here (TRL would override one under DDP anyway); add your
  own to `model_init_kwargs` for a different placement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peft import PeftConfig
    from trl import ModelConfig

BNB_FIX = "pip install bitsandbytes"


def require_bitsandbytes(what: str = "load_in_4bit=True") -> None:
    """Raise a one-line ImportError naming the fix when bitsandbytes cannot be imported."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # noqa: BLE001 -- ImportError, or a broken install failing otherwise on import
        reason = "not installed" if isinstance(exc, ModuleNotFoundError) else f"{type(exc).__name__}: {exc}"
        raise ImportError(f"{what} needs bitsandbytes, which could not be imported ({reason}); "
                          f"fix: `{BNB_FIX}`.") from None


def model_kwargs_and_peft(model_config: ModelConfig) -> tuple[dict[str, Any], PeftConfig | None]:
    """`(model_init_kwargs, peft_config)` for a GRPO-family trainer, from TRL's `ModelConfig`.

    Args:
        model_config: `trl.ModelConfig`. The fields used are `load_in_4bit` / `load_in_8bit`,
            `bnb_4bit_quant_type` ("nf4" default, or "fp4"), `use_bnb_nested_quant`,
            `bnb_4bit_quant_storage`, `dtype` (model dtype *and* the 4-bit compute dtype:
            "bfloat16" on GPU, "float32" on CPU), `model_revision`, `attn_implementation`, and the
            PEFT fields `use_peft`, `lora_r`, `lora_alpha`, `lora_dropout`, `lora_target_modules`
            (and the other `lora_*`/`use_rslora`/`use_dora` fields, all read by `trl.get_peft_config`).
            `model_name_or_path` is not used: pass the path to the trainer yourself.

    Returns:
        model_init_kwargs: a dict for `GRPOConfig(model_init_kwargs=...)` (or any trl-plus config):
            `dtype`, `revision`, optionally `attn_implementation`, and, when quantised,
            `quantization_config` (a `transformers.BitsAndBytesConfig`). Merge it with any
            `model_init_kwargs` of your own (yours win on shared keys, as in `trl grpo`).
        peft_config: a `peft.LoraConfig` for the trainer's `peft_config=` argument, or None when
            `use_peft` is False.

    Raises:
        ImportError: `load_in_4bit`/`load_in_8bit` without an importable bitsandbytes
            (the message says `pip install bitsandbytes`).
        ValueError: a quantised base without `use_peft` (4-bit weights cannot be trained), or
            `dtype="auto"` with 4-bit (the compute dtype must be explicit; None means float32).

    CLI mapping (`trl-plus train ALGO ...`): `--load-in-4bit`, `--bnb-4bit-quant-type`,
    `--use-bnb-nested-quant`, `--dtype`, `--use-peft`, `--lora-r`, `--lora-alpha`, `--lora-dropout`,
    `--lora-target-modules` are the `ModelConfig` fields of the same names; build a
    `ModelConfig` from them, call this, put `model_init_kwargs` into the algorithm's config and
    pass `peft_config` and the model *path* to its trainer.
    """
    import trl

    quantised = bool(model_config.load_in_4bit or model_config.load_in_8bit)
    if quantised:
        flag = ("load_in_4bit=True (--load-in-4bit)" if model_config.load_in_4bit
                else "load_in_8bit=True (--load-in-8bit)")
        require_bitsandbytes(flag)
        if not model_config.use_peft:
            raise ValueError(f"{flag} freezes the base model in low-bit weights, which cannot be trained: also pass "
                             "use_peft=True (--use-peft) to train LoRA adapters on top (QLoRA).")
        if model_config.load_in_4bit and model_config.dtype == "auto":
            # trl.get_quantization_config uses `dtype` as the 4-bit compute dtype; "auto" is not a dtype there.
            raise ValueError(f"load_in_4bit=True needs an explicit dtype for the 4-bit compute (got "
                             f"{model_config.dtype!r}): pass dtype='bfloat16' (--dtype bfloat16) on GPU, or "
                             "'float32' on CPU.")

    kwargs: dict[str, Any] = {"revision": model_config.model_revision, "dtype": model_config.dtype}
    if model_config.attn_implementation is not None:
        kwargs["attn_implementation"] = model_config.attn_implementation
    quantization_config = trl.get_quantization_config(model_config)
    if quantization_config is not None:
        # No device_map: TRL 1.16 has no get_kbit_device_map and places the model itself (module docstring).
        kwargs["quantization_config"] = quantization_config
    return kwargs, trl.get_peft_config(model_config)


def use_exact_4bit_matmul(*models) -> int:
    """Keep every bitsandbytes `Linear4bit` of `models` (None skipped) on its dequantise-then-matmul path.

    Returns how many layers it set.

    On a CPU with AVX512-BF16, bitsandbytes (0.49+) repacks a `Linear4bit` weight in place at its first
    eval-mode forward without gradients, and from then on computes that layer in bfloat16 through a kernel
    with no backward, whatever `bnb_4bit_compute_dtype` says. A trainer runs such forwards mid-training
    (ReMax's greedy baseline, an evaluation, listwise sampling), so the frozen 4-bit weights would change
    layout, the base would switch to bf16 and the next backward would run through an op without gradients.
    Turning the repack off keeps training and evaluation on one numeric path on every CPU; GPUs never
    repack. A layer already repacked is unpacked: the same 4-bit codes, with the block scales (absmax)
    rounded to bf16 by the repack.
    """
    try:
        import bitsandbytes as bnb
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
    except Exception:  # noqa: BLE001 -- no (working) bitsandbytes: no 4-bit layers to keep exact
        return 0
    count = 0
    modules = [module for model in models if model is not None for module in model.modules()]
    for module in modules:
        if isinstance(module, bnb.nn.Linear4bit) and hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            state = module.weight.quant_state
            if getattr(state, "packing_format_for_cpu", False):
                nested = state.original_nested
                module.weight.data, state = _convert_weight_packed_for_cpu_inverse(module.weight.data, state)
                if not nested:  # bitsandbytes leaves this absmax as the repack's (K/blocksize, N) bf16
                    state.absmax = state.absmax.T.reshape(-1).float()
                module.weight.quant_state = state
            count += 1
    return count
