"""Record what a ProcessGRPO run samples: one `benchmarks/learning.py` run, with 16 sampled completions and their
step rewards written every 25 training steps.

    python benchmarks/process_samples.py --label ps_grpo_neutral0 --seed 1 --lr 5e-5 --budget 19200 \
        --out benchmarks/results/process_samples_neutral0_seed1.jsonl

It runs `learning.run_one` as `learning.py --eval-every 3200` does (same seed, SFT start and problems), so its
accuracy curve, printed at the end, matches the raw file of that run. Needs the SFT warm-up cached by `learning.py`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import learning
from common import VARIANTS, pin_threads


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--label", default="ps_grpo", choices=[v for v in VARIANTS if v.startswith("ps_grpo")])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--budget", type=int, default=19200)
    p.add_argument("--every", type=int, default=25, help="record every N-th scoring call (one per training step)")
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "trl-plus-bench"))
    p.add_argument("--out", required=True)
    args = p.parse_args()
    pin_threads(1)

    from reward_fns import process

    calls, score = [0], process.ArithmeticSteps.__call__

    def recorded(self, prompts=None, completions=None, **kwargs):
        steps = score(self, prompts=prompts, completions=completions, **kwargs)
        calls[0] += 1
        if calls[0] % args.every == 1:
            with open(args.out, "a") as f:
                f.write(json.dumps({"call": calls[0], "prompts": [str(q)[-60:] for q in prompts[:16]],
                                    "texts": self.texts(completions)[:16], "steps": steps[:16]}) + "\n")
        return steps

    process.ArithmeticSteps.__call__ = recorded
    Path(args.out).write_text("")
    cache = Path(args.cache)
    run = learning.run_one(args.label, args.seed, cache / f"sft-seed{args.seed}", args.budget, 3200,
                           cache / "samples-work", lr=args.lr, n_eval=1000, n_dev=1000)
    print("test accuracy curve:", run["curve"]["accuracy"], "final dev:", run["final_dev_accuracy"])


if __name__ == "__main__":
    main()
