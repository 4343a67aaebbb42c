"""The demo's RL phase with other step counts and learning rates, from the seed's SFT model saved once.

    python benchmarks/demo_rl_variants.py --seed 0 --algo grpo --lr 2e-4 --steps 150

Runs `trl_plus.demo`'s own SFT warm-up (once per seed, saved under `--cache`), then its `rl_train` with the given
settings, and appends {seed, algo, lr, steps, before, after, gain, rl_seconds} to `--out` (JSON lines). Used for
`results/demo_speed.md` (issue 17, item 7).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, pin_threads


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--algo", default="grpo")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "trl-plus-bench"))
    p.add_argument("--out", default=str(RESULTS / "demo_rl_variants.jsonl"))
    args = p.parse_args()
    pin_threads(args.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from trl_plus.data import generate_problems
    from trl_plus.demo import DemoSettings, greedy_accuracy, rl_train, sft_warmup, tiny_model_path

    s = DemoSettings(algo=args.algo, seed=args.seed, rl_lr=args.lr, rl_steps=args.steps,
                     out_dir=str(Path(args.cache) / f"demo-variant-{args.seed}"), cache_dir=str(Path(args.cache) / "tiny"))
    set_seed(args.seed)
    train = generate_problems(s.n_train, seed=args.seed)
    dev = generate_problems(s.n_dev, seed=args.seed + 1_000_003)
    test = generate_problems(s.n_test, seed=args.seed + 2_000_003)
    sft_dir = Path(args.cache) / f"demo-sft-seed{args.seed}"
    if not (sft_dir / "config.json").is_file():
        model, tok, _ = sft_warmup(tiny_model_path(s), train, dev, s)
        model.save_pretrained(sft_dir)
        tok.save_pretrained(sft_dir)
    model = AutoModelForCausalLM.from_pretrained(sft_dir)
    tok = AutoTokenizer.from_pretrained(sft_dir)
    before = greedy_accuracy(model, tok, test, s.max_completion_length)
    start = time.perf_counter()
    trainer = rl_train(model, tok, train, s)
    seconds = time.perf_counter() - start
    after = greedy_accuracy(trainer.model, tok, test, s.max_completion_length)
    result = {"seed": args.seed, "algo": args.algo, "lr": args.lr, "steps": args.steps, "before": before,
              "after": after, "gain": round(100 * (after - before), 1), "rl_seconds": round(seconds, 1),
              "threads": args.threads, "load_average": machine()["load_average_1_5_15"]}
    print(json.dumps(result), flush=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
