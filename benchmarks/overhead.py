"""Per-step overhead of each trl-plus trainer relative to TRL's GRPOTrainer at identical settings.

`engine` is `PlusGRPOTrainer` with its default estimator (TRL's advantages): the cost of the engine itself.
Every trainer gets the same tiny model (a fresh copy each), the same prompts (same seed), batch (8 prompts x G=8),
`max_completion_length`, beta (0) and learning rate. Completion length is pinned: `generation_kwargs=
{"min_new_tokens": L}` with `L = max_completion_length`, so every completion (sampled, and ReMax's greedy one) is
exactly L tokens and a step's cost does not depend on what was sampled. A step is one full optimisation step
(generation, reward scoring, advantage computation, loss, backward, optimiser step), run by hand on each trainer
(`common.StepRunner`) so the trainers can be interleaved: after warm-up, each repetition steps every trainer once,
in a rotating order. Reported: median ms per step; `ratio` = median(algo) / median(TRL GRPO); `paired` = median over
repetitions of algo / GRPO within the same repetition (steadier on a loaded machine); and the same from process CPU
time (one thread: it does not count time spent waiting for a core).

ReMax's target is 1 + (cost of one greedy generation) / (GRPO step): the greedy rollout (generation of one
completion per prompt plus its scoring) is timed inside the ReMax trainer at every step.

Run: `python benchmarks/overhead.py --reps 9 --json benchmarks/results/overhead.json`
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import StepRunner, machine, make_trainer, md_table, median, pin_threads, write_results

LABELS = ["grpo", "engine", "dr_grpo", "dapo", "ps_grpo", "rahf", "reinforce_pp", "reinforce_pp_baseline", "remax",
          "ppo"]
TARGETS = {"engine": 1.05, "dr_grpo": 1.05, "dapo": 1.05, "ps_grpo": 1.05, "rahf": 1.05, "reinforce_pp": 1.35,
           "reinforce_pp_baseline": 1.35,
           # PPO: the critic's forward at rollout and its forward/backward/step (a policy-sized model) + the
           # reference forward of the KL reward: about 2x a GRPO step plus that KL forward.
           "ppo": 2.35}


def build(label: str, model_path, rows, args, work: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from trl_plus import algorithms
    from trl_plus.data import to_prompt_dataset

    set_seed(args.seed)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    tok = AutoTokenizer.from_pretrained(model_path)
    # `grpo` is TRL's own GRPOTrainer (the baseline); `engine` is trl-plus's `grpo`, the engine with TRL's advantages.
    engine = algorithms.ALGORITHMS["grpo"]
    if label == "grpo":
        algorithms.ALGORITHMS["grpo"] = algorithms.Algorithm("grpo", "trl", "GRPOConfig", "GRPOTrainer")
    try:
        return make_trainer("grpo" if label == "engine" else label, model, tok,
                            to_prompt_dataset(rows, system_prompt=None, conversational=False),
                            str(work / label), seed=args.seed, prompts_per_step=args.prompts,
                            num_generations=args.generations, max_completion_length=args.length,
                            max_steps=args.reps + args.warmup + 5, logging_steps=10**6,
                            generation_kwargs={"min_new_tokens": args.length})
    finally:
        algorithms.ALGORITHMS["grpo"] = engine


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--length", type=int, default=28, help="max_completion_length, and every completion's length")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="model directory (default: the demo's tiny model, random init)")
    p.add_argument("--json", default=None, help='write {"ratios": {algo: ratio}, ...} here')
    p.add_argument("--md", default=None, help="write a markdown table here")
    p.add_argument("--labels", nargs="+", default=LABELS, choices=LABELS,
                   help="trainers to time (grpo, the baseline, is always included)")
    args = p.parse_args()
    labels = ["grpo", *[lb for lb in args.labels if lb != "grpo"]]
    pin_threads(1)
    import tempfile

    from trl_plus.data import generate_problems
    from trl_plus.demo import DemoSettings, tiny_model_path

    work = Path(tempfile.mkdtemp(prefix="trl-plus-overhead-"))
    model_path = args.model or tiny_model_path(DemoSettings(seed=args.seed, cache_dir=str(work / "tiny"), model_size="tiny"))
    rows = generate_problems(2000, seed=args.seed)
    load_before = machine()["load_average_1_5_15"]
    runners = {lb: StepRunner(build(lb, model_path, rows, args, work)) for lb in labels}

    greedy, greedy_cpu = [], []
    if "remax" in runners:
        remax = runners["remax"].trainer
        inner = remax.greedy_baseline

        def timed_greedy(n_local):
            start, start_cpu = time.perf_counter(), time.process_time()
            result = inner(n_local)
            greedy.append(time.perf_counter() - start)
            greedy_cpu.append(time.process_time() - start_cpu)
            return result

        remax.greedy_baseline = timed_greedy

    wall = {lb: [] for lb in labels}
    cpu = {lb: [] for lb in labels}
    for rep in range(args.warmup + args.reps):
        order = labels[rep % len(labels):] + labels[: rep % len(labels)]
        for lb in order:
            w = runners[lb].step()
            if rep >= args.warmup:
                wall[lb].append(w * 1e3)
                cpu[lb].append(runners[lb].last_cpu * 1e3)
        print(f"[overhead] rep {rep}: " + " ".join(f"{lb}={runners[lb].last_cpu * 1e3:.0f}" for lb in labels),
              flush=True)
    greedy_ms = median(greedy[args.warmup:]) * 1e3 if greedy else 0.0
    greedy_cpu_ms = median(greedy_cpu[args.warmup:]) * 1e3 if greedy_cpu else 0.0
    base, base_cpu = median(wall["grpo"]), median(cpu["grpo"])
    result = {"ratios": {}, "paired_ratios": {}, "cpu_ratios": {}, "median_ms": {}, "median_cpu_ms": {},
              "targets": {}, "meets_target": {}}
    for lb in labels:
        result["median_ms"][lb] = round(median(wall[lb]), 1)
        result["median_cpu_ms"][lb] = round(median(cpu[lb]), 1)
        if lb == "grpo":
            continue
        result["ratios"][lb] = round(median(wall[lb]) / base, 3)
        result["paired_ratios"][lb] = round(median([a / b for a, b in zip(wall[lb], wall["grpo"])]), 3)
        result["cpu_ratios"][lb] = round(median(cpu[lb]) / base_cpu, 3)
        paired_cpu = sorted(a / b for a, b in zip(cpu[lb], cpu["grpo"]))
        result.setdefault("paired_cpu_ratios", {})[lb] = round(median(paired_cpu), 3)
        q = len(paired_cpu) // 4
        result.setdefault("paired_cpu_ratio_iqr", {})[lb] = [round(paired_cpu[q], 3), round(paired_cpu[-1 - q], 3)]
        target = TARGETS.get(lb, 1 + greedy_ms / base)
        target_cpu = TARGETS.get(lb, 1 + greedy_cpu_ms / base_cpu)
        result["targets"][lb] = round(target, 3)
        result.setdefault("cpu_targets", {})[lb] = round(target_cpu, 3)
        result["meets_target"][lb] = {"wall": result["ratios"][lb] <= target,
                                      "cpu": result["cpu_ratios"][lb] <= target_cpu}
    result["remax_greedy_rollout_ms"] = round(greedy_ms, 1)
    result["remax_greedy_rollout_cpu_ms"] = round(greedy_cpu_ms, 1)
    result["settings"] = {"prompts_per_step": args.prompts, "num_generations": args.generations,
                          "completion_tokens": args.length, "pinned_length": True, "beta": 0.0,
                          "reps": args.reps, "warmup": args.warmup, "threads": 1}
    result["machine"] = machine()
    result["machine"]["load_average_before"] = load_before
    result["command"] = "python benchmarks/overhead.py " + " ".join(sys.argv[1:])
    result["raw_ms"] = {lb: [round(x, 1) for x in wall[lb]] for lb in labels}
    result["raw_cpu_ms"] = {lb: [round(x, 1) for x in cpu[lb]] for lb in labels}

    rows_md = [["grpo (TRL)", result["median_ms"]["grpo"], result["median_cpu_ms"]["grpo"], "1.000", "1.000", "1.000",
                "1.000", "—", ""]]
    for lb in labels[1:]:
        ok = result["meets_target"][lb]
        rows_md.append([lb, result["median_ms"][lb], result["median_cpu_ms"][lb], f"{result['ratios'][lb]:.3f}",
                        f"{result['paired_ratios'][lb]:.3f}", f"{result['cpu_ratios'][lb]:.3f}",
                        (f"{result['paired_cpu_ratios'][lb]:.3f} [{result['paired_cpu_ratio_iqr'][lb][0]:.2f}, "
                        f"{result['paired_cpu_ratio_iqr'][lb][1]:.2f}]"),
                        f"≤ {result['targets'][lb]:.2f} / {result['cpu_targets'][lb]:.2f}", ("yes" if ok["wall"] else "no") + " / " +
                        ("yes" if ok["cpu"] else "no")])
    m = result["machine"]
    text = "\n".join([
        "# Per-step overhead against TRL's GRPOTrainer",
        "",
        (f"{args.prompts} prompts x G={args.generations}, every completion exactly {args.length} tokens "
        f"(`min_new_tokens` pinned), beta 0, tiny Llama ({'random init' if args.model is None else args.model}), "
        f"1 thread, {args.warmup} warm-up + {args.reps} interleaved repetitions, medians. "
        + (f"ReMax's target is 1 + greedy rollout / GRPO step = 1 + {greedy_ms:.0f} / {base:.0f} ms wall, "
         f"1 + {greedy_cpu_ms:.0f} / {base_cpu:.0f} ms CPU (the greedy rollout, one completion per prompt plus its "
         "scoring, timed inside the ReMax trainer)." if "remax" in labels else "")),
        "",
        md_table(["algorithm", "ms/step (wall)", "ms/step (CPU)", "ratio (wall)", "ratio (paired)", "ratio (CPU)",
                  "ratio (CPU, paired) [quartiles]",
                  "target (wall / CPU)", "meets (wall / CPU)"], rows_md),
        "",
        (f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, shared with other jobs: load "
        f"average {load_before} before and {m['load_average_1_5_15']} after the run. Wall ratios on a loaded "
        "machine carry several per cent of noise; the CPU-time ratios (process CPU time, one thread) are the "
        "steadier figure."),
        "",
        f"Command: `{result['command']}`",
    ])
    write_results(text, result, args.json, args.md)


if __name__ == "__main__":
    main()
