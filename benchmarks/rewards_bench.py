"""Benchmark of the reward_fns presets: scoring 10k completions with the full `gsm8k` preset.

Run: `python benchmarks/rewards_bench.py [--n 10000] [--repeats 5] [--data-dir DIR_WITH_GSM8K_JSONL]`.
Target (issue 4): the `gsm8k` preset scores 10,000 completions in under 1 s on CPU. Also reported, for
information: `gsm8k_lm_eval` and the `arithmetic_steps` process reward. Completions are a realistic mix
built from GSM8K gold solutions: well-formatted right answers, wrong answers, numeric-only matches, raw GSM8K
text, conversational messages, broken tags and junk. The solutions come from the folder given by `--data-dir`
(or the `TRL_PLUS_GSM8K_DIR` environment variable) holding GSM8K's `train.jsonl` and `test.jsonl`; without
either, from the sample committed in tests/data/gsm8k; if that is missing too, from a synthetic set. The
printed source says which. Prints a table of median wall and process-CPU times and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import reward_fns

TARGET_S = 1.0
SAMPLE = ROOT / "tests" / "data" / "gsm8k"  # the committed sample, a few hundred rows per split


def gsm8k_dir(data_dir: str | None) -> Path | None:
    """The GSM8K folder to read: `--data-dir`, else $TRL_PLUS_GSM8K_DIR, else the committed sample (None if absent).
    A folder named explicitly must hold both files: a typo fails here instead of silently benchmarking other data."""
    named = data_dir or os.environ.get("TRL_PLUS_GSM8K_DIR")
    folder = Path(named) if named else SAMPLE
    missing = [f for f in ("train.jsonl", "test.jsonl") if not (folder / f).is_file()]
    if named and missing:
        sys.exit(
            f"error: {folder} has no {' or '.join(missing)}: pass --data-dir (or set TRL_PLUS_GSM8K_DIR to) "
            "a folder with GSM8K's train.jsonl and test.jsonl."
        )
    return None if missing else folder


def load_answers(data_dir: str | None = None) -> tuple[list[str], str]:
    folder = gsm8k_dir(data_dir)
    if folder is not None:
        files = [folder / "train.jsonl", folder / "test.jsonl"]
        rows = [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines() if line]
        label = "committed GSM8K sample" if folder == SAMPLE else "real GSM8K"
        return [r["answer"] for r in rows], label
    rng = random.Random(0)
    answers = []
    for _ in range(2000):
        a, b = rng.randint(10, 999), rng.randint(2, 99)
        answers.append(f"He has {a}*{b} = <<{a}*{b}={a * b}>>{a * b} apples.\n#### {a * b}")
    return answers, "synthetic"


def make_batch(n: int, seed: int = 0, data_dir: str | None = None) -> tuple[list, list[str], str]:
    answers, source = load_answers(data_dir)
    rng = random.Random(seed)
    completions, golds = [], []
    for _ in range(n):
        answer = rng.choice(answers)
        gold = reward_fns.extract_gold(answer)
        text = reward_fns.to_training_format(answer)
        kind = rng.randrange(8)
        if kind == 1:
            text = text.replace(f"#### {gold}", f"#### {rng.randint(0, 9999)}")
        elif kind == 2:
            text = text.replace(f"#### {gold}", f"#### {reward_fns.normalize_number(gold)}.0")
        elif kind == 3:
            text = answer
        elif kind == 4:
            text = text[: rng.randrange(len(text))]
        elif kind == 5:
            text = text + "\nI hope this helps! The answer is 42."
        elif kind == 6:
            text = "".join(rng.choice("0123456789 +-*/=<>#abc\n") for _ in range(rng.randint(0, 400)))
        completions.append([{"role": "assistant", "content": text}] if rng.random() < 0.5 else text)
        golds.append(answer)
    return completions, golds, source


def score(funcs, weights, completions, golds) -> list[float]:
    columns = [f(prompts=None, completions=completions, answer=golds) for f in funcs]
    return [sum(w * (c[i] or 0.0) for w, c in zip(weights, columns)) for i in range(len(completions))]


def median_s(fn, repeats: int) -> tuple[float, float]:
    """Median wall and process-CPU seconds per call after one warm-up. On a shared machine the CPU time
    is the steadier figure: it does not count time spent waiting for a core."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--data-dir",
        dest="data_dir",
        default=None,
        help="folder with GSM8K train.jsonl and test.jsonl (default: $TRL_PLUS_GSM8K_DIR, else the "
        "sample in tests/data/gsm8k, else a synthetic set)",
    )
    args = parser.parse_args()

    completions, golds, source = make_batch(args.n, data_dir=args.data_dir)
    results = {}
    for name in ("gsm8k", "gsm8k_lm_eval"):
        funcs, weights = reward_fns.preset(name)
        results[f"preset {name}"] = median_s(
            lambda funcs=funcs, weights=weights: score(funcs, weights, completions, golds), args.repeats
        )
    steps = reward_fns.make_arithmetic_steps()  # a fresh instance: its evaluator cache is module-wide anyway
    results["arithmetic_steps"] = median_s(lambda: steps(prompts=None, completions=completions), args.repeats)

    print(
        f"reward_fns benchmark: {args.n} completions ({source} solutions), {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, median of {args.repeats}"
    )
    print(f"{'scoring':<24}{'wall s':>10}{'cpu s':>10}{'us/completion':>16}")
    for label, (wall, cpu) in results.items():
        print(f"{label:<24}{wall:>10.3f}{cpu:>10.3f}{wall / args.n * 1e6:>16.1f}")
    wall, cpu = results["preset gsm8k"]
    ok = wall < TARGET_S
    print(
        f"target: preset gsm8k on {args.n} completions < {TARGET_S:.0f} s (median wall) -> {'PASS' if ok else 'FAIL'}"
    )
    print(
        json.dumps(
            {
                "benchmark": "rewards",
                "n": args.n,
                "source": source,
                **{k.replace(" ", "_") + "_wall_s": round(v[0], 4) for k, v in results.items()},
                **{k.replace(" ", "_") + "_cpu_s": round(v[1], 4) for k, v in results.items()},
                "target_s": TARGET_S,
                "pass": ok,
            }
        )
    )


if __name__ == "__main__":
    main()
