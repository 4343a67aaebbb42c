"""GPU throughput: completion tokens per second of trl-plus trainers vs TRL's GRPOTrainer on a 0.5B-shaped Qwen2.

The model is built from a hand-written config with Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 heads, 2 KV
heads, intermediate 4864, vocabulary 151936, tied embeddings), randomly initialised in bf16, so nothing is
downloaded. The tokenizer is trl-plus's offline character tokenizer (its ids are a subset of the vocabulary).
Completion length is pinned (`min_new_tokens = max_completion_length`) so every step generates the same number of
tokens. Steps are run by hand and interleaved across trainers after warm-up; reported: median seconds per step and
completion tokens per second (prompts x G x length / step seconds), and the ratio to TRL's GRPOTrainer.

Needs CUDA; fails at once without it.
Run: `python benchmarks/gpu_throughput.py --json benchmarks/results/gpu.json --md benchmarks/results/gpu.md`
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

QWEN2_0_5B = {
    "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
    "num_key_value_heads": 2, "max_position_embeddings": 32768, "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True, "hidden_act": "silu",
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algos", nargs="+", default=["dr_grpo", "dapo", "reinforce_pp", "remax", "rahf"],
                   help="trl-plus variants to compare with TRL's grpo (labels of benchmarks/common.py VARIANTS)")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--length", type=int, default=256, help="completion tokens (pinned)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None)
    args = p.parse_args()

    import torch

    if not torch.cuda.is_available():
        sys.exit("gpu_throughput.py needs a CUDA GPU (torch.cuda.is_available() is False). Run it on a machine with "
                 "an NVIDIA GPU: python benchmarks/gpu_throughput.py --json benchmarks/results/gpu.json "
                 "--md benchmarks/results/gpu.md")

    import tempfile
    import time

    from common import VARIANTS, StepRunner, machine, make_trainer, md_table, median, write_results
    from transformers import Qwen2Config, Qwen2ForCausalLM, set_seed

    from trl_plus.data import generate_problems, to_prompt_dataset
    from trl_plus.tiny import build_tokenizer

    unknown = [a for a in args.algos if a not in VARIANTS or a == "grpo"]
    if unknown:
        sys.exit(f"Unknown or baseline algos {unknown}: pick from {[v for v in VARIANTS if v != 'grpo']}.")
    work = Path(tempfile.mkdtemp(prefix="trl-plus-gpu-"))
    set_seed(0)
    config = Qwen2Config(**QWEN2_0_5B, torch_dtype="bfloat16")
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    tok = build_tokenizer()
    path = work / "qwen2-0.5b-shaped"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    n_params = sum(t.numel() for t in model.parameters())
    del model
    dataset = to_prompt_dataset(generate_problems(4000, seed=0), system_prompt=None, conversational=False)

    labels = ["grpo", *args.algos]
    runners = {}
    for lb in labels:
        set_seed(0)
        m = Qwen2ForCausalLM.from_pretrained(path, torch_dtype=torch.bfloat16)
        t = make_trainer(lb, m, tok, dataset, str(work / lb), prompts_per_step=args.prompts,
                         num_generations=args.generations, max_completion_length=args.length,
                         max_steps=args.reps + args.warmup + 5, logging_steps=10**6, use_cpu=False, bf16=True,
                         generation_kwargs={"min_new_tokens": args.length})
        runners[lb] = StepRunner(t)
    times = {lb: [] for lb in labels}
    for rep in range(args.warmup + args.reps):
        for lb in labels[rep % len(labels):] + labels[: rep % len(labels)]:
            torch.cuda.synchronize()
            start = time.perf_counter()
            runners[lb].step()
            torch.cuda.synchronize()
            if rep >= args.warmup:
                times[lb].append(time.perf_counter() - start)
    tokens = args.prompts * args.generations * args.length
    base = median(times["grpo"])
    result = {"tokens_per_s": {lb: round(tokens / median(times[lb]), 1) for lb in labels},
              "seconds_per_step": {lb: round(median(times[lb]), 3) for lb in labels},
              "ratio_to_grpo": {lb: round(median(times[lb]) / base, 3) for lb in labels},
              "parameters": n_params, "settings": vars(args), "gpu": torch.cuda.get_device_name(0),
              "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2), "machine": machine(),
              "command": "python benchmarks/gpu_throughput.py " + " ".join(sys.argv[1:])}
    text = "\n".join([
        "# GPU throughput: trl-plus trainers vs TRL GRPOTrainer",
        "",
        (f"{result['gpu']}; Qwen2 0.5B-shaped ({n_params / 1e6:.0f}M parameters, random init, bf16); "
        f"{args.prompts} prompts x G={args.generations}, {args.length} completion tokens (pinned); "
        f"{args.warmup} warm-up + {args.reps} interleaved repetitions, medians."),
        "",
        md_table(["algorithm", "s / step", "completion tokens / s", "step time vs TRL GRPO"],
                 [[lb, result["seconds_per_step"][lb], result["tokens_per_s"][lb], result["ratio_to_grpo"][lb]]
                  for lb in labels]),
        "",
        f"Command: `{result['command']}`",
    ])
    write_results(text, result, args.json, args.md)


if __name__ == "__main__":
    main()
