"""Demo timing: wall time and accuracy gain of `trl-plus demo` at its default settings, median over seeds.

Runs the CLI as a user would (a fresh process per seed, imports included), one seed after another, and records for
each the wall time, the held-out accuracy before and after RL, the SFT/RL split and the machine's load average.
The targets (issue 17, item 7) are for this 2-core machine: the *median* over the seeds at most 180 s and at least
+25 points. A busy machine stretches the wall time, so run it on an idle one.

Run: `python benchmarks/demo_timing.py [--seeds 0 1 2] [--algo grpo]`
(writes benchmarks/results/demo_timing.{json,md}). Extra arguments after `--` go to `trl-plus demo`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, md_table

TARGET_SECONDS, TARGET_GAIN = 180, 25.0


def run_once(seed: int, algo: str, extra: list[str], fresh_cache: bool) -> dict:
    """One `trl-plus demo` in a fresh process; its report plus the measured wall time and load."""
    work = Path(tempfile.mkdtemp(prefix="trl-plus-demo-timing-"))
    exe = shutil.which("trl-plus") or str(Path(sys.executable).parent / "trl-plus")
    cmd = [exe, "demo", "--algo", algo, "--seed", str(seed), "--out_dir", str(work / "out"),
           "--report_json", str(work / "report.json"), *extra]
    if fresh_cache:
        cmd += ["--cache_dir", str(work / "cache")]
    load_before = machine()["load_average_1_5_15"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=False, env=os.environ.copy(), text=True, capture_output=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        sys.exit(f"trl-plus demo (seed {seed}) failed with exit code {proc.returncode}")
    report = json.loads((work / "report.json").read_text())
    shutil.rmtree(work, ignore_errors=True)
    return {
        "seed": seed, "wall_seconds": round(seconds, 1), "accuracy_before": report["accuracy_before"],
        "accuracy_after": report["accuracy_after"],
        "gain_points": round((report["accuracy_after"] - report["accuracy_before"]) * 100, 1),
        "warm_start": report.get("warm_start", "sft"), "sft_steps": report["sft_steps"],
        "sft_seconds": report["sft_seconds"], "rl_steps": report["steps"],
        "rl_seconds": report["rl_seconds"], "load_average_before": load_before,
        "load_average_after": machine()["load_average_1_5_15"], "settings": report["settings"],
        "demo_command": " ".join(["trl-plus", *cmd[1:]]).replace(str(work), "<tmp>"),
    }


def summarise(runs: list[dict]) -> dict:
    """Medians over the runs and whether they meet the targets."""
    wall = statistics.median(r["wall_seconds"] for r in runs)
    gain = statistics.median(r["gain_points"] for r in runs)
    return {"median_wall_seconds": wall, "median_gain_points": gain,
            "median_accuracy_after": statistics.median(r["accuracy_after"] for r in runs),
            "meets_time_target": wall <= TARGET_SECONDS, "meets_gain_target": gain >= TARGET_GAIN}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--algo", default="grpo")
    p.add_argument("--fresh-cache", action="store_true", help="build the tiny model in a fresh cache (counts its "
                   "construction, as a first run would)")
    p.add_argument("--out", default=str(RESULTS / "demo_timing"), help="results path without extension")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="-- then extra `trl-plus demo` arguments")
    args = p.parse_args()
    extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    runs = []
    for seed in args.seeds:
        runs.append(run_once(seed, args.algo, extra, args.fresh_cache))
        print(json.dumps({k: v for k, v in runs[-1].items() if k != "settings"}), flush=True)
    summary = summarise(runs)
    result = {**summary, "targets": {"seconds": TARGET_SECONDS, "gain_points": TARGET_GAIN}, "runs": runs,
              "command": "python benchmarks/demo_timing.py " + " ".join(sys.argv[1:]), "machine": machine(),
              "threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
    m = result["machine"]
    rows = [[r["seed"], f"{r['wall_seconds']:.0f} s", f"{r['accuracy_before']:.1%}", f"{r['accuracy_after']:.1%}",
             f"{r['gain_points']:+.1f}",
             f"shipped ({r['sft_steps']} steps)" if r["warm_start"] == "shipped"
             else f"{r['sft_steps']} / {r['sft_seconds']} s",
             f"{r['rl_steps']} / {r['rl_seconds']} s", f"{r['load_average_before'][0]} → {r['load_average_after'][0]}"]
            for r in runs]
    rows.append(["**median**", f"**{summary['median_wall_seconds']:.0f} s**", "",
                 f"{summary['median_accuracy_after']:.1%}", f"**{summary['median_gain_points']:+.1f}**", "", "", ""])
    verdict = (f"time {'met' if summary['meets_time_target'] else 'MISSED'}, gain "
               f"{'met' if summary['meets_gain_target'] else 'MISSED'}")
    text = "\n".join([
        (f"# `trl-plus demo --algo {args.algo}{' ' + ' '.join(extra) if extra else ''}` timing "
        f"({'default settings' if not extra else 'settings other than the default'})"),
        "",
        (f"Targets, median over seeds on this 2-core machine: at most {TARGET_SECONDS} s and at least "
        f"+{TARGET_GAIN:.0f} points. Result: **{verdict}**."),
        "",
        md_table(["seed", "wall time", "accuracy before RL", "after RL", "gain (points)", "SFT warm-up: steps / s",
                  "RL steps / s", "load (1 min) before → after"], rows),
        "",
        (f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory_gib']} GiB. Accuracy is greedy, on the demo's "
        f"{runs[0]['settings']['n_test']} held-out problems. Each seed runs in a fresh process (imports and model "
        "loading included); the seeds run one after another."),
        "",
        f"Command: `{result['command']}` (each runs `{runs[0]['demo_command']}` with its seed)",
    ])
    Path(args.out + ".json").write_text(json.dumps(result, indent=1))
    Path(args.out + ".md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
