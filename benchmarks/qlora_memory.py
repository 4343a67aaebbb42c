"""Peak GPU memory and step time of QLoRA (4-bit NF4 + LoRA r=16) GRPO-family training.

Models are *shaped* like real checkpoints but built from hand-written configs with random weights,
so nothing is downloaded:
- `qwen2-7b`: Qwen2-7B (hidden 3584, intermediate 18944, 28 layers, 28 heads, 4 KV heads, vocab 152064,
  untied embeddings), in 4-bit NF4 + LoRA r=16. Target: peak <= 20 GiB, so it fits a 24 GB card.
- `qwen2.5-1.5b`: Qwen2.5-1.5B (hidden 1536, intermediate 8960, 28 layers, 12 heads, 2 KV heads, vocab
  151936, tied embeddings), in bf16 + LoRA r=16 vs 4-bit NF4 + LoRA r=16.
Each run trains `--steps` measured steps (after `--warmup-steps`) of a trl-plus trainer with
`num_generations=4`, 4 completions of exactly 256 tokens (`min_new_tokens`) per step, 128-token prompts,
gradient checkpointing on (TRL's default), LoRA on all seven linear projections.

How the 4-bit model is built without 30 GB of CPU RAM or a 15 GB checkpoint on disk: the model is
instantiated on the *meta* device (no memory), then transformers' own bitsandbytes quantizer
(`AutoHfQuantizer.from_config(BitsAndBytesConfig)`, the object `from_pretrained` uses) swaps every
`nn.Linear` for a meta `bnb.nn.Linear4bit` (`preprocess_model` -> `replace_with_bnb_linear`, with its rule
of which modules stay unquantised, e.g. `lm_head`). Each Linear4bit weight is then created directly on the
GPU as a random bf16 matrix and quantised on the spot exactly as `from_pretrained`'s loader does
(`bnb.nn.Params4bit(w, requires_grad=False, **meta_param.__dict__).to(device)`), so at most one bf16
matrix (<= 136 MB for 7B's MLP) exists at a time. The few unquantised tensors (embeddings, lm_head, norms,
biases) are materialised on the GPU and initialised like transformers does (normal(0, initializer_range),
norms at 1), the rotary embedding is rebuilt on the device, and `postprocess_model` marks the model as
loaded in 4-bit (`is_loaded_in_4bit`, `config.quantization_config`), so TRL and PEFT treat it exactly like a
checkpoint loaded with `quantization_config`: PEFT wraps the Linear4bit layers with its bnb LoRA layers,
TRL casts the adapter to bf16, and the reference policy is the adapter-disabled base. The quantisation
config and LoRA config come from `trl_plus.qlora.model_kwargs_and_peft(trl.ModelConfig(...))`.
The bf16 model is built with `from_config` directly on the GPU.

Every (model, weights, algorithm) run happens in a fresh subprocess, so memory of one run never leaks
into the next. Peak memory is `torch.cuda.max_memory_allocated` over the whole training (weights +
generation + loss + optimizer), reset after the trainer is built; `weights_gib` is what the built model
holds. Results are (re)written after every run to `benchmarks/results/qlora_memory.json`.

Usage:
    python benchmarks/qlora_memory.py                      # CUDA GPU: every run, ~5 min on an H100
    python benchmarks/qlora_memory.py --runs qwen2-7b:nf4 --algos dr_grpo
    python benchmarks/qlora_memory.py --dry-run            # anywhere: the plan and weight-memory estimates
    python benchmarks/qlora_memory.py --device cpu --tiny  # CPU smoke test of the same code path (tiny Qwen2)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "qlora_memory.json"
SMOKE_RESULTS = ROOT / "benchmarks" / "results" / "qlora_memory_smoke.json"
GIB = 1024**3
TARGET_GIB = 20.0

QWEN2_COMMON = {
    "max_position_embeddings": 32768, "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6, "hidden_act": "silu",
    "initializer_range": 0.02, "use_sliding_window": False, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2,
}
SHAPES = {
    "qwen2-7b": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
                 "num_key_value_heads": 4, "vocab_size": 152064, "tie_word_embeddings": False},
    "qwen2.5-1.5b": {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                     "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
                     "tie_word_embeddings": True},
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 512, "tie_word_embeddings": True},
}
GPU_RUNS = ["qwen2-7b:nf4", "qwen2.5-1.5b:bf16", "qwen2.5-1.5b:nf4"]
SMOKE_RUNS = ["tiny:nf4", "tiny:bf16"]
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# ----- model, tokenizer, data -------------------------------------------------------------------------


def qwen2_config(shape: str):
    from transformers import Qwen2Config

    return Qwen2Config(**QWEN2_COMMON, **SHAPES[shape])


def model_config(weights: str, dtype: str):
    """TRL's ModelConfig for the run: the single source of the quantisation and LoRA settings."""
    from trl import ModelConfig

    return ModelConfig(dtype=dtype, load_in_4bit=weights == "nf4", bnb_4bit_quant_type="nf4", use_peft=True,
                       lora_r=16, lora_alpha=32, lora_dropout=0.0, lora_target_modules=LORA_TARGETS)


def build_tokenizer(vocab_size: int):
    """A word-level tokenizer with exactly `vocab_size` tokens `t0 t1 ...` (ids 0-2: bos, eos, pad)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "</s>", "<pad>"]
    vocab = {tok: i for i, tok in enumerate(specials + [f"t{i}" for i in range(len(specials), vocab_size)])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<pad>")
    tok.padding_side = "left"
    return tok


def build_dataset(vocab_size: int, prompt_len: int, n: int, seed: int = 0):
    import random

    from datasets import Dataset

    rng = random.Random(seed)
    return Dataset.from_list([{"prompt": " ".join(f"t{rng.randrange(3, vocab_size)}" for _ in range(prompt_len))}
                              for _ in range(n)])


def even_tokens(completions, **kwargs):
    """The share of even token ids: it varies between samples (binomially), so advantages are non-zero.

    (A count of distinct tokens would not: with a 150k vocabulary every random completion scores the same.)
    """
    return [sum(int(w[1:]) % 2 == 0 for w in c.split() if w[1:].isdigit()) / max(len(c.split()), 1)
            for c in completions]


def _init_unquantised(module, std: float):
    import torch

    for name, param in module.named_parameters(recurse=False):
        with torch.no_grad():
            if name == "bias":
                param.zero_()
            elif isinstance(module, (torch.nn.Embedding, torch.nn.Linear)):
                param.normal_(0.0, std)
            else:  # RMSNorm weights
                param.fill_(1.0)


def build_quantised(config, quantization_config, device: str):
    """A randomly initialised 4-bit model, built on meta and quantised tensor by tensor on `device`."""
    import bitsandbytes as bnb
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.quantizers import AutoHfQuantizer

    dtype = quantization_config.bnb_4bit_compute_dtype
    quantizer = AutoHfQuantizer.from_config(quantization_config, pre_quantized=False)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    device_map = {"": device}
    quantizer.validate_environment(device_map=device_map)
    quantizer.preprocess_model(model, device_map=device_map, dtype=dtype)  # nn.Linear -> meta Linear4bit
    std = config.initializer_range
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            meta = module.weight
            weight = torch.empty(meta.shape, dtype=dtype, device=device).normal_(0.0, std)
            # The quantisation step of transformers' loader (Bnb4bitQuantize.convert).
            module.weight = bnb.nn.Params4bit(weight, requires_grad=False, **meta.__dict__).to(device)
            del weight
            if module.bias is not None:
                module.bias = torch.nn.Parameter(torch.zeros(module.bias.shape, dtype=dtype, device=device))
        elif any(p.is_meta for p in module.parameters(recurse=False)):
            module.to_empty(device=device, recurse=False)
            _init_unquantised(module, std)
    if config.tie_word_embeddings:
        model.tie_weights()
    rotary = model.model.rotary_emb
    model.model.rotary_emb = type(rotary)(config=config).to(device)  # its inv_freq buffer was on meta
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:
        raise RuntimeError(f"tensors left on meta after building: {leftover[:5]}")
    model.hf_quantizer = quantizer
    quantizer.postprocess_model(model)  # is_loaded_in_4bit, config.quantization_config, as from_pretrained
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    return model


def build_full(config, dtype, device: str):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    return model


# ----- one run (in a subprocess) ----------------------------------------------------------------------


def run_one(spec: dict) -> dict:
    import torch
    from transformers import TrainerCallback

    from trl_plus.algorithms import build_trainer, get_algorithm
    from trl_plus.qlora import model_kwargs_and_peft

    device, shape, weights, algo_name = spec["device"], spec["shape"], spec["weights"], spec["algo"]
    cuda = device.startswith("cuda")
    dtype_name = "bfloat16" if cuda else "float32"  # bnb's CPU 4-bit path computes in float32
    config = qwen2_config(shape)
    init_kwargs, peft_config = model_kwargs_and_peft(model_config(weights, dtype_name))

    def synced():
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    torch.manual_seed(0)
    start = synced()
    if weights == "nf4":
        model = build_quantised(config, init_kwargs["quantization_config"], device)
    else:
        model = build_full(config, getattr(torch, dtype_name), device)
    build_s = synced() - start
    weights_bytes = torch.cuda.memory_allocated() if cuda else None

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.t0 = [], None

        def on_step_begin(self, args, state, control, **kwargs):
            self.t0 = synced()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(synced() - self.t0)

    algo = get_algorithm(algo_name)
    config_cls, _ = algo.classes()
    total_steps = spec["warmup_steps"] + spec["steps"]
    g = spec["num_generations"]
    with tempfile.TemporaryDirectory() as out:
        args = config_cls(
            output_dir=out, use_cpu=not cuda, bf16=cuda, max_steps=total_steps, learning_rate=1e-5,
            per_device_train_batch_size=g, num_generations=g, max_completion_length=spec["completion_len"],
            generation_kwargs={"min_new_tokens": spec["completion_len"]},  # always full-length completions
            gradient_checkpointing=True, logging_steps=1, save_strategy="no", report_to=[], seed=0,
            disable_tqdm=True, **algo.defaults,
        )
        timer = StepTimer()
        trainer = build_trainer(
            algo_name, model=model, reward_funcs=[even_tokens], args=args,
            train_dataset=build_dataset(config.vocab_size, spec["prompt_len"], n=total_steps * g),
            processing_class=build_tokenizer(config.vocab_size), peft_config=peft_config, callbacks=[timer],
        )
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        n4 = sum(type(m).__name__ == "Linear4bit" and "lora" not in type(m).__module__
                 for m in trainer.model.modules())
        before = {n: p.detach().to("cpu", copy=True) for n, p in trainer.model.named_parameters() if p.requires_grad}
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
        after = dict(trainer.model.named_parameters())
        lora_changed = any(not torch.equal(p, after[n].detach().cpu()) for n, p in before.items())
        peak = torch.cuda.max_memory_allocated() if cuda else None
        reserved = torch.cuda.max_memory_reserved() if cuda else None

    import resource

    lengths = [row["completions/mean_length"] for row in trainer.state.log_history
               if "completions/mean_length" in row]
    measured = timer.times[spec["warmup_steps"]:]
    result = {
        "model": shape, "weights": weights, "weights_dtype": "nf4" if weights == "nf4" else dtype_name,
        "compute_dtype": dtype_name, "algo": algo_name, "params_total": estimate(shape, weights)["params_total"],
        "linear4bit_modules": n4, "trainable_params": trainable, "lora_changed": lora_changed,
        "build_s": round(build_s, 2),
        "weights_gib": round(weights_bytes / GIB, 3) if weights_bytes is not None else None,
        "peak_allocated_gib": round(peak / GIB, 3) if peak is not None else None,
        "peak_reserved_gib": round(reserved / GIB, 3) if reserved is not None else None,
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 3),
        "step_time_s": [round(t, 3) for t in measured],
        "step_time_mean_s": round(sum(measured) / len(measured), 3) if measured else None,
        "warmup_step_time_s": [round(t, 3) for t in timer.times[: spec["warmup_steps"]]],
        "completion_length_mean": sum(lengths) / len(lengths) if lengths else None,
        "steps": trainer.state.global_step,
    }
    if peak is not None:
        result["within_target"] = peak / GIB <= TARGET_GIB
    return result


# ----- driver ------------------------------------------------------------------------------------------


def estimate(shape: str, weights: str) -> dict:
    """Parameter counts and weight memory from a meta model (allocates nothing)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = qwen2_config(shape)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    linear = sum(m.weight.numel() for n, m in model.named_modules()
                 if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head"))
    total = sum(p.numel() for p in model.parameters())
    other = total - linear
    # NF4: 0.5 byte per weight + one fp32 absmax per 64-weight block; the rest stays bf16.
    nf4 = linear * (0.5 + 4 / 64) + other * 2
    lora = sum(16 * (m.in_features + m.out_features) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in LORA_TARGETS)
    return {"model": shape, "weights": weights, "params_total": total, "params_linear": linear,
            "lora_params": lora, "weights_gib_estimate": round((nf4 if weights == "nf4" else total * 2) / GIB, 3)}


def environment(device: str) -> dict:
    import importlib.metadata as md

    import torch

    env = {"device": device, "platform": platform.platform(), "python": platform.python_version()}
    if device.startswith("cuda"):
        env["device_name"] = torch.cuda.get_device_name(device)
        env["device_memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / GIB, 2)
    else:
        env["device_name"] = platform.processor() or "cpu"
    for pkg in ("torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate"):
        env[pkg] = md.version(pkg)
    return env


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__[__doc__.index("Usage"):],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu (smoke test; needs --tiny)")
    p.add_argument("--tiny", action="store_true", help="tiny Qwen2 shape, short prompts/completions: a smoke test")
    p.add_argument("--dry-run", action="store_true", help="print the plan and weight-memory estimates, run nothing")
    p.add_argument("--runs", default=None, help=f"comma-separated SHAPE:WEIGHTS (default: {','.join(GPU_RUNS)}; "
                                                f"with --tiny: {','.join(SMOKE_RUNS)}); WEIGHTS: nf4, or bf16 "
                                                "(float32 on CPU)")
    p.add_argument("--algos", default="dr_grpo,reinforce_pp",
                   help="trl-plus algorithms to run on each model (default: dr_grpo,reinforce_pp; reinforce_pp adds "
                        "the KL reward, i.e. a reference pass with the adapter disabled)")
    p.add_argument("--steps", type=int, default=None, help="measured steps per run (default 3; --tiny 1)")
    p.add_argument("--warmup-steps", type=int, default=1, help="unmeasured first steps (default 1)")
    p.add_argument("--num-generations", type=int, default=4)
    p.add_argument("--completion-len", type=int, default=None, help="tokens per completion (default 256; --tiny 8)")
    p.add_argument("--prompt-len", type=int, default=None, help="tokens per prompt (default 128; --tiny 16)")
    p.add_argument("--output", default=None, help=f"results JSON (default {RESULTS.relative_to(ROOT)}; "
                                                  f"--tiny: {SMOKE_RESULTS.relative_to(ROOT)})")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse(argv)
    if a.worker:  # child process: one run, result on the last stdout line
        result = run_one(json.loads(a.worker))
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    runs = (a.runs or ",".join(SMOKE_RUNS if a.tiny else GPU_RUNS)).split(",")
    for run in runs:
        shape, _, weights = run.partition(":")
        if shape not in SHAPES or weights not in ("nf4", "bf16"):
            print(f"qlora_memory.py: bad --runs entry {run!r}: use SHAPE:WEIGHTS with SHAPE in {sorted(SHAPES)} and "
                  "WEIGHTS nf4 or bf16.", file=sys.stderr)
            return 2
    algos = a.algos.split(",")
    from trl_plus.algorithms import ALGORITHMS

    bad = [x for x in algos if x not in ALGORITHMS]
    if bad:
        print(f"qlora_memory.py: unknown algorithm(s) {bad}; choose from {', '.join(ALGORITHMS)}.", file=sys.stderr)
        return 2
    settings = {
        "num_generations": a.num_generations,
        "completion_len": a.completion_len or (8 if a.tiny else 256),
        "prompt_len": a.prompt_len or (16 if a.tiny else 128),
        "steps": a.steps if a.steps is not None else (1 if a.tiny else 3),
        "warmup_steps": a.warmup_steps,
        "lora": {"r": 16, "alpha": 32, "target_modules": LORA_TARGETS}, "gradient_checkpointing": True,
    }

    if a.dry_run:
        plan = [estimate(*run.split(":")) for run in runs]
        print(json.dumps({"settings": settings, "algos": algos, "runs": plan}, indent=2))
        return 0

    import torch

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"qlora_memory.py: no CUDA GPU here (torch {torch.__version__}, torch.cuda.is_available() is False). "
              "Run it on a CUDA machine, or smoke-test on CPU with --device cpu --tiny (or --dry-run).",
              file=sys.stderr)
        return 2
    if a.device == "cpu" and not all(r.startswith("tiny:") for r in runs):
        print("qlora_memory.py: --device cpu only runs the tiny shape; add --tiny.", file=sys.stderr)
        return 2
    from trl_plus.qlora import require_bitsandbytes

    try:
        require_bitsandbytes("qlora_memory.py")
    except ImportError as e:
        print(e, file=sys.stderr)
        return 2

    output = Path(a.output) if a.output else (SMOKE_RESULTS if a.tiny else RESULTS)
    report = {"benchmark": "qlora_memory", "target_peak_gib": TARGET_GIB, **environment(a.device),
              "settings": settings, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": []}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    device = a.device
    if device.startswith("cuda:"):  # one visible GPU per child, so the trainer and the model agree on cuda:0
        env["CUDA_VISIBLE_DEVICES"], device = device.split(":", 1)[1], "cuda"
    for run in runs:
        shape, _, weights = run.partition(":")
        for algo in algos:
            spec = {"device": device, "shape": shape, "weights": weights, "algo": algo, **settings}
            print(f"== {shape} {weights} {algo}", flush=True)
            proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], check=False, env=env,
                                  capture_output=True, text=True)
            lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode == 0 and lines:
                result = {"status": "ok", **json.loads(lines[-1][len("RESULT "):])}
            else:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                result = {"model": shape, "weights": weights, "algo": algo, "status": f"error: {tail[0][:300]}"}
                sys.stderr.write(proc.stderr[-4000:])
            report["runs"].append(result)
            print(json.dumps(result), flush=True)
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {output}")
    return 0 if all(r["status"] == "ok" for r in report["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
