"""Benchmark of the trl_plus.core estimators on CPU at B=512, T=2048.

Run: `python benchmarks/core_bench.py [--batch 512] [--length 2048] [--repeats 15]`.
Prints a table of median wall times (after warm-up) and one JSON line. Targets (issue 3): every estimator under
50 ms, `process_advantages` (512 completions x 10 steps) under 200 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trl_plus import core

TARGET_MS = 50.0
PROCESS_TARGET_MS = 200.0


def time_ms(fn, repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median wall ms per call (the figure the targets apply to), plus two figures that a shared, busy machine
    distorts less: the fastest call, and the median process CPU time (all threads summed; it does not count the time
    this process waited for a core)."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.process_time() - start_cpu) * 1e3)
    return {"median": statistics.median(wall), "min": min(wall), "cpu": statistics.median(cpu)}


def make_inputs(batch: int, length: int, group_size: int, steps: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(length // 4, length + 1, (batch,), generator=g)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).float()
    rewards = torch.randint(0, 3, (batch,), generator=g).float()
    group_ids = torch.arange(batch) // group_size
    logp = -torch.rand(batch, length, generator=g) * 3
    ref_logp = logp + 0.1 * torch.randn(batch, length, generator=g)
    kl = core.kl_penalty(logp, ref_logp, "k1")
    token_rewards = core.token_level_rewards(rewards, mask, kl=kl, kl_coef=0.01, reward_clip=10.0)
    values = torch.randn(batch, length, generator=g)
    step_rewards, step_ends = [], []
    for n in lengths.tolist():
        ends = torch.linspace(n / steps, n, steps).long().sub(1).clamp(min=0).tolist()
        step_ends.append(ends)
        step_rewards.append(torch.rand(steps, generator=g).tolist())
    return {
        "mask": mask,
        "rewards": rewards,
        "group_ids": group_ids,
        "logp": logp,
        "ref_logp": ref_logp,
        "kl": kl,
        "token_rewards": token_rewards,
        "values": values,
        "step_rewards": step_rewards,
        "step_ends": step_ends,
        "loss": torch.randn(batch, length, generator=g),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    x = make_inputs(args.batch, args.length, args.group_size, args.steps)
    m, r, gid, tr = x["mask"], x["rewards"], x["group_ids"], x["token_rewards"]
    cases = {
        "kl_penalty(k3)": lambda: core.kl_penalty(x["logp"], x["ref_logp"], "k3"),
        "token_level_rewards": lambda: core.token_level_rewards(r, m, kl=x["kl"], kl_coef=0.01, reward_clip=10.0),
        "returns_to_go(gamma=1)": lambda: core.returns_to_go(tr, m, 1.0),
        "returns_to_go(gamma=0.99)": lambda: core.returns_to_go(tr, m, 0.99),
        "masked_whiten": lambda: core.masked_whiten(tr, m),
        "grpo_advantages": lambda: core.grpo_advantages(r, gid),
        "dr_grpo_advantages": lambda: core.dr_grpo_advantages(r, gid),
        "rloo_advantages": lambda: core.rloo_advantages(r, gid),
        "reinforce_pp_advantages": lambda: core.reinforce_pp_advantages(tr, m),
        "reinforce_pp_baseline_advantages": lambda: core.reinforce_pp_baseline_advantages(
            r, gid, m, kl=x["kl"], kl_coef=0.01
        ),
        "remax_advantages": lambda: core.remax_advantages(tr, r.flip(0), m),
        "gae_advantages(gamma=1,lam=0.95)": lambda: core.gae_advantages(tr, x["values"], m, 1.0, 0.95),
        "aggregate_loss(grpo)": lambda: core.aggregate_loss(x["loss"], m, "grpo"),
        "aggregate_loss(dapo)": lambda: core.aggregate_loss(x["loss"], m, "dapo"),
        "process_advantages": lambda: core.process_advantages(x["step_rewards"], x["step_ends"], gid, m),
    }
    results = {name: time_ms(fn, args.repeats) for name, fn in cases.items()}

    print(
        f"trl_plus.core on CPU: B={args.batch}, T={args.length}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}; "
        f"median of {args.repeats} after warm-up; load average {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} CPUs (a busy machine inflates every figure)"
    )
    print(f"{'function':<36} {'median ms':>10} {'min ms':>8} {'cpu ms':>8} {'target':>7}  median ok")
    for name, t in results.items():
        target = PROCESS_TARGET_MS if name == "process_advantages" else TARGET_MS
        ok = "yes" if t["median"] < target else "NO"
        print(f"{name:<36} {t['median']:>10.2f} {t['min']:>8.2f} {t['cpu']:>8.2f} {target:>7.0f}  {ok}")
    print(
        json.dumps(
            {
                "batch": args.batch,
                "length": args.length,
                "threads": torch.get_num_threads(),
                "load_average": round(os.getloadavg()[0], 2),
                "torch": torch.__version__,
                "ms": {name: {k: round(v, 3) for k, v in t.items()} for name, t in results.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
