"""Listwise (Plackett-Luce) DPO against pairwise DPO on the same K samples per prompt, with paired seeds.

One SFT-warmed tiny model of the demo (SFT seed `--sft-seed`, stopped at 35% dev accuracy, cached as in
`learning.py`; SFT is the costly part on 2 cores, so it is shared). Per seed, it samples K = 4 completions for each
of `--prompts` training problems (temperature 1, the demo's 28 tokens); the demo's rewards (correctness 1.0 +
format 0.1) score them; prompts whose K scores are all equal are dropped (no preference). On the same samples, from the same model and seed:

- listwise: `ListwiseDPOTrainer` on the full rankings (ties by the documented rule);
- pairwise: TRL's `DPOTrainer` on (best, worst) of the same K samples (the first best and last worst on ties).

Both use the same `beta`, learning rate, rows per step and epochs: the same number of samples drawn from the policy.
Held-out greedy accuracy on the demo's 200 test problems before and after. Per-seed results are kept in
`results/listwise_raw/`, so an interrupted run resumes; the report aggregates whatever exists.

    nice -n 10 python benchmarks/listwise.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, md_table, pin_threads, write_results
from learning import sft_model

RAW = RESULTS / "listwise_raw"
METHODS = ("listwise", "pairwise")
BEFORE: dict[str, float] = {}


def best_and_worst(row: dict) -> dict:
    scores = row["scores"]
    best = scores.index(max(scores))
    worst = len(scores) - 1 - scores[::-1].index(min(scores))
    return {"prompt": row["prompt"], "chosen": row["completions"][best], "rejected": row["completions"][worst]}


def train(method: str, sft_path: Path, data, args, seed: int, work: Path) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import DPOConfig, DPOTrainer

    from trl_plus import ListwiseDPOConfig, ListwiseDPOTrainer

    set_seed(seed)
    model, tok = AutoModelForCausalLM.from_pretrained(sft_path), AutoTokenizer.from_pretrained(sft_path)
    config_cls, trainer_cls = (ListwiseDPOConfig, ListwiseDPOTrainer) if method == "listwise" else (DPOConfig,
                                                                                                  DPOTrainer)
    rows = list(data) if method == "listwise" else [best_and_worst(r) for r in data]
    config = config_cls(
        output_dir=str(work / f"{method}-seed{seed}"), use_cpu=True, bf16=False, seed=seed, report_to=[],
        per_device_train_batch_size=args.rows_per_step, learning_rate=args.lr, beta=args.beta,
        num_train_epochs=args.epochs, lr_scheduler_type="constant", logging_steps=10, save_strategy="no",
        gradient_checkpointing=False, disable_tqdm=True, max_length=None,
    )
    trainer = trainer_cls(model=model, args=config, processing_class=tok,
                          train_dataset=Dataset.from_list([{k: r[k] for k in r if k != "answer"} for r in rows]))
    start = time.perf_counter()
    trainer.train()
    return {"model": trainer.model, "tok": tok, "steps": trainer.state.global_step,
            "train_seconds": round(time.perf_counter() - start, 1),
            "sequences_per_step": 2 if method == "pairwise" else round(
                sum(len(r["completions"]) for r in rows) / len(rows), 2)}


def run_seed(seed: int, args) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from trl_plus import build_listwise_dataset
    from trl_plus.data import to_prompt_dataset
    from trl_plus.demo import REWARDS, DemoSettings, demo_problems, greedy_accuracy

    cache = Path(args.cache)
    folder = RAW / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    settings = DemoSettings(seed=args.sft_seed, out_dir=str(cache / f"sft-work-{args.sft_seed}"),
                            cache_dir=str(cache / "tiny"), model_size="tiny")
    sft_path, sft_meta = sft_model(args.sft_seed, cache, settings)
    # the SFT seed's problems: sampling prompts come from its training set, held-out ones from its test set
    train_rows, _, test_rows = demo_problems(settings)
    model, tok = AutoModelForCausalLM.from_pretrained(sft_path), AutoTokenizer.from_pretrained(sft_path)
    if str(sft_path) not in BEFORE:  # the shared SFT model's accuracy, measured once
        BEFORE[str(sft_path)] = greedy_accuracy(model, tok, test_rows, settings.max_completion_length)
    before = BEFORE[str(sft_path)]
    set_seed(seed)
    start = time.perf_counter()
    # each seed draws its own prompts and samples
    chosen = random.Random(seed).sample(train_rows, args.prompts)
    prompts = to_prompt_dataset(chosen, system_prompt=None, conversational=False)
    data = build_listwise_dataset(model, prompts, list(REWARDS), k=args.k, tokenizer=tok,
                                  reward_weights=list(REWARDS.values()), temperature=1.0, batch_size=64,
                                  max_new_tokens=settings.max_completion_length, drop_all_tied=True)
    sampling = {"sampled_completions": args.prompts * args.k, "rows_with_a_preference": len(data),
                "sampling_seconds": round(time.perf_counter() - start, 1), "accuracy_before": before, **sft_meta}
    print(f"[listwise] seed {seed}: SFT accuracy {before:.3f}, {len(data)} of {args.prompts} prompts ranked",
          flush=True)
    for method in METHODS:
        path = folder / f"{method}.json"
        if path.is_file() and not args.force:
            continue
        out = train(method, sft_path, data, args, seed, cache / "work")
        after = greedy_accuracy(out.pop("model"), out.pop("tok"), test_rows, settings.max_completion_length)
        result = {"method": method, "seed": seed, "accuracy_after": after, **sampling, **out,
                  "settings": {k: getattr(args, k) for k in ("k", "prompts", "lr", "beta", "rows_per_step", "epochs",
                                                            "sft_seed")},
                  "load_average_after": machine()["load_average_1_5_15"]}
        path.write_text(json.dumps(result, indent=1))
        print(f"[listwise] seed {seed} {method}: {before:.3f} -> {after:.3f} ({out['steps']} steps, "
              f"{out['train_seconds']} s)", flush=True)


def report() -> None:
    runs = {}
    for path in sorted(RAW.glob("seed*/*.json")):
        r = json.loads(path.read_text())
        runs.setdefault(r["seed"], {})[r["method"]] = r
    seeds = sorted(s for s, by in runs.items() if set(METHODS) <= set(by))
    if not seeds:
        print("no complete seed yet")
        return
    rows, gains = [], {m: [] for m in METHODS}
    for s in seeds:
        by = runs[s]
        before = by["listwise"]["accuracy_before"]
        for m in METHODS:
            gains[m].append(100 * (by[m]["accuracy_after"] - before))
        rows.append([s, f"{100 * before:.1f}%", f"{100 * by['listwise']['accuracy_after']:.1f}%",
                     f"{100 * by['pairwise']['accuracy_after']:.1f}%",
                     f"{gains['listwise'][-1] - gains['pairwise'][-1]:+.1f}", by["listwise"]["rows_with_a_preference"],
                     f"{by['listwise']['train_seconds']} / {by['pairwise']['train_seconds']} s"])
    mean = lambda xs: sum(xs) / len(xs)
    diffs = [a - b for a, b in zip(gains["listwise"], gains["pairwise"])]
    spread = f" (sd {statistics.stdev(diffs):.1f})" if len(diffs) > 1 else ""
    settings = runs[seeds[0]]["listwise"]["settings"]
    text = "\n".join([
        "# Listwise (Plackett-Luce) DPO vs pairwise DPO on the same samples",
        "",
        (f"Demo task (2-digit addition), one SFT-warmed tiny model (SFT seed {settings['sft_seed']}); per seed, "
        f"K = {settings['k']} samples for each of "
        f"{settings['prompts']} prompts, scored by the demo's rewards, all-tied prompts dropped. Listwise: "
        "`ListwiseDPOTrainer` on the full rankings; pairwise: TRL's `DPOTrainer` on best vs worst of the same K. "
        f"Same model, samples and seed per row; beta {settings['beta']}, lr {settings['lr']}, "
        f"{settings['rows_per_step']} prompts per step, {settings['epochs']} epoch(s). Held-out greedy accuracy on "
        "200 problems."),
        "",
        md_table(["seed", "after SFT", "listwise DPO", "pairwise DPO", "listwise - pairwise (points)",
                  "prompts ranked", "train time (listwise / pairwise)"], rows),
        "",
        (f"Mean gain over SFT: listwise {mean(gains['listwise']):+.1f} points, pairwise {mean(gains['pairwise']):+.1f} "
        f"points; paired difference {mean(diffs):+.1f} points{spread} over {len(seeds)} seed(s). One accuracy on 200 "
        f"problems has a binomial noise of about {100 * (0.25 / 200) ** 0.5:.1f} points. Same samples drawn from the policy, but "
        "listwise DPO runs all K sequences of a prompt per step (pairwise 2), hence about twice the training time."),
        "",
        f"Machine: {machine()['nproc']} cores, shared with other jobs (train times are wall-clock upper bounds).",
        "Command: `nice -n 10 python benchmarks/listwise.py --seeds " + " ".join(map(str, seeds)) + "`",
    ])
    result = {"seeds": seeds, "gain_points": gains, "paired_difference_points": diffs, "runs": runs}
    write_results(text, result, str(RESULTS / "listwise.json"), str(RESULTS / "listwise.md"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sft-seed", dest="sft_seed", type=int, default=0)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--prompts", type=int, default=800)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--beta", type=float, default=0.5)
    p.add_argument("--rows-per-step", dest="rows_per_step", type=int, default=16)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "trl-plus-bench"))
    p.add_argument("--force", action="store_true", help="rerun methods whose raw result exists")
    p.add_argument("--report", action="store_true", help="only aggregate the raw results")
    args = p.parse_args()
    pin_threads(1)
    if not args.report:
        for seed in args.seeds:
            run_seed(seed, args)
    report()


if __name__ == "__main__":
    main()
