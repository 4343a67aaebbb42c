"""DAPO dynamic sampling: generation rounds per step, groups kept per group generated, and the time share of
generation, as the fraction of zero-variance groups varies.

The fraction is controlled with a synthetic reward: each group (the G completions of one prompt, side by side in
the reward call) is flat (every member 0.0) with probability p, and otherwise gets distinct random rewards. DAPO
(`dynamic_sampling=True`, `max_num_gen_batches` rounds at most) then drops the flat groups and draws new prompts
until the batch holds its 8 groups again. The expected rounds per step (a Monte Carlo of that rule, capped) are
printed beside the measured ones. Completion length is pinned (`min_new_tokens`) so every round costs the same. Timing is by hand-run
steps (`common.StepRunner`); generation time is measured around TRL's `_generate` (`common.GenerationMeter`), and
its share is generation seconds / step seconds (CPU time and wall time both reported).

Run: `python benchmarks/dynamic_sampling.py --steps 5 --json benchmarks/results/dynamic_sampling.json`
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import GenerationMeter, StepRunner, machine, make_trainer, md_table, pin_threads, write_results


class FlatGroups:
    """Reward whose groups are flat with probability p (the members of a group are consecutive in the call)."""

    def __init__(self, p: float, group_size: int, seed: int = 0):
        self.p, self.G, self.rng = p, group_size, random.Random(seed)
        self.__name__ = "flat_groups"

    def __call__(self, prompts, completions, **kwargs):
        out = []
        for i in range(0, len(completions), self.G):
            n = min(self.G, len(completions) - i)
            out += [0.0] * n if self.rng.random() < self.p else [self.rng.random() for _ in range(n)]
        return out


def expected_rounds(p: float, groups: int, cap: int, trials: int = 20000, seed: int = 0) -> float:
    """Mean rounds per step (Monte Carlo): each round generates `groups` groups, each kept with probability 1 - p,
    until `groups` are kept or `cap` rounds ran."""
    rng = random.Random(seed)
    total = 0
    for _ in range(trials):
        kept = rounds = 0
        while kept < groups and (cap == 0 or rounds < cap):
            rounds += 1
            kept += sum(rng.random() >= p for _ in range(groups))
        total += rounds
    return total / trials


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 0.9])
    p.add_argument("--steps", type=int, default=5, help="measured steps per fraction (after 1 warm-up step)")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--length", type=int, default=28)
    p.add_argument("--max-rounds", type=int, default=10, help="max_num_gen_batches")
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None)
    args = p.parse_args()
    pin_threads(1)
    import tempfile

    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from trl_plus.data import generate_problems, to_prompt_dataset
    from trl_plus.demo import DemoSettings, tiny_model_path

    work = Path(tempfile.mkdtemp(prefix="trl-plus-dynsamp-"))
    model_path = tiny_model_path(DemoSettings(seed=0, cache_dir=str(work / "tiny"), model_size="tiny"))
    dataset = to_prompt_dataset(generate_problems(2000, seed=0), system_prompt=None, conversational=False)
    load_before = machine()["load_average_1_5_15"]
    rows = []
    for frac in args.fractions:
        set_seed(0)
        model = AutoModelForCausalLM.from_pretrained(model_path)
        tok = AutoTokenizer.from_pretrained(model_path)
        trainer = make_trainer("dapo_ds", model, tok, dataset, str(work / f"p{frac}"), prompts_per_step=args.prompts,
                               num_generations=args.generations, max_completion_length=args.length,
                               max_steps=args.steps + 5, reward_funcs=[FlatGroups(frac, args.generations)],
                               reward_weights=[1.0], max_num_gen_batches=args.max_rounds, logging_steps=10**6,
                               generation_kwargs={"min_new_tokens": args.length})
        runner = StepRunner(trainer)
        meter = GenerationMeter(trainer)
        totals = {"rounds": 0, "generated": 0, "kept": 0, "filled": 0, "gen_wall": 0.0, "gen_cpu": 0.0, "wall": 0.0, "cpu": 0.0}
        inner = trainer._generate

        def gen_cpu_timed(prompts, _inner=inner, _totals=totals):
            start = time.process_time()
            try:
                return _inner(prompts)
            finally:
                _totals["gen_cpu"] += time.process_time() - start

        trainer._generate = gen_cpu_timed
        for step in range(1 + args.steps):
            g0, _gc0 = meter.seconds, totals["gen_cpu"]
            wall = runner.step()
            if step == 0:
                totals["gen_cpu"] = 0.0
                continue
            m = runner.last_metrics
            totals["rounds"] += sum(m.get("dapo/gen_rounds", [0]))
            totals["generated"] += sum(m.get("dapo/groups_generated", [0]))
            totals["kept"] += sum(m.get("dapo/groups_kept", [0]))
            totals["filled"] += sum(m.get("dapo/groups_filled", [0]))
            totals["gen_wall"] += meter.seconds - g0
            totals["wall"] += wall
            totals["cpu"] += runner.last_cpu
        n = args.steps
        row = {
            "flat_fraction": frac,
            "expected_rounds": round(expected_rounds(frac, args.prompts, args.max_rounds, trials=4000), 2),
            "rounds_per_step": totals["rounds"] / n,
            "groups_generated_per_step": totals["generated"] / n,
            "kept_per_generated": totals["kept"] / max(totals["generated"], 1),
            "filled_per_step": totals["filled"] / n,
            "generation_share_cpu": totals["gen_cpu"] / totals["cpu"],
            "generation_share_wall": totals["gen_wall"] / totals["wall"],
            "ms_per_step_cpu": 1e3 * totals["cpu"] / n,
            "ms_per_step_wall": 1e3 * totals["wall"] / n,
        }
        rows.append(row)
        print(f"[dynamic_sampling] {row}", flush=True)

    result = {"rows": rows, "settings": vars(args), "machine": machine(), "load_average_before": load_before,
              "command": "python benchmarks/dynamic_sampling.py " + " ".join(sys.argv[1:])}
    table = md_table(
        ["zero-variance fraction p", "rounds / step (expected)", "groups generated / step",
         "kept / generated", "filled at cap / step", "generation share (CPU)", "generation share (wall)",
         "ms / step (CPU)"],
        [[r["flat_fraction"], f"{r['rounds_per_step']:.2f} ({r['expected_rounds']:.2f})",
          f"{r['groups_generated_per_step']:.1f}", f"{r['kept_per_generated']:.2f}", f"{r['filled_per_step']:.1f}",
          f"{r['generation_share_cpu']:.0%}", f"{r['generation_share_wall']:.0%}", f"{r['ms_per_step_cpu']:.0f}"]
         for r in rows])
    m = result["machine"]
    text = "\n".join([
        "# DAPO dynamic sampling efficiency",
        "",
        (f"{args.prompts} prompts x G={args.generations} per step, completions pinned at {args.length} tokens, "
        f"max_num_gen_batches={args.max_rounds}, synthetic reward: a group is flat with probability p. "
        f"{args.steps} measured steps per p after one warm-up step, tiny Llama (random init), 1 thread."),
        "",
        table,
        "",
        ("Generation share = time inside TRL's `_generate` / step time; the rest is scoring, the reference-free "
        "loss forward/backward and the optimiser step, which do not grow with the rounds (only kept groups are "
        "trained on)."),
        "",
        (f"Machine: {m['nproc']} cores ({m['cpu_model']}), shared: load average {load_before} before, "
        f"{m['load_average_1_5_15']} after."),
        "",
        f"Command: `{result['command']}`",
    ])
    write_results(text, result, args.json, args.md)


if __name__ == "__main__":
    main()
