"""Report of `benchmarks/learning.py`: each algorithm's setting chosen on the dev split, its test accuracy paired
against GRPO's chosen setting with a 95% t-interval, and each paper's own claim read off the same runs.

Every raw file under `results/learning_raw[/<task>]/seed*/` is one (algorithm, setting, seed) run. For each algorithm
the setting with the best mean final *dev* accuracy over the seeds that ran all of its settings is chosen; the test
split is never used to choose. The chosen setting's *test* accuracy over all of its seeds is then reported, and its
per-seed difference to GRPO's chosen setting (same seed, same SFT start, same test problems) gives the interval.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, VARIANTS, machine, md_table

RAW = RESULTS / "learning_raw"
DEFAULT = "lr=0.0001"
# Two-sided 95% quantiles of Student's t by degrees of freedom (n seeds - 1).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def raw_dir(task: str, group: str | None = None) -> Path:
    """Where a task's raw runs live; a named group (e.g. 'long', the longer stability runs) has its own folder."""
    base = RAW if task == "addition" else RAW / task
    return base / group if group else base


def stability(task: str, group: str = "long") -> str:
    """REINFORCE++'s claim, from the longer runs in `raw_dir(task, group)`: KL to the reference and the reward over the
    run, per algorithm (mean over seeds, by quarter of the run), plus start and final test accuracy."""
    runs, _ = load_runs(raw_dir(task, group))
    rows = []
    for lb, settings in runs.items():
        for name, by_seed in settings.items():
            quarters = {"kl": [[] for _ in range(4)], "reward": [[] for _ in range(4)]}
            for r in by_seed.values():
                log = r.get("log", [])
                kl_key = _kl_key(log)
                for i, e in enumerate(log):
                    q = min(4 * i // max(len(log), 1), 3)
                    quarters["reward"][q].append(e.get("reward"))
                    if kl_key:
                        quarters["kl"][q].append(e.get(kl_key))
            acc = [(100 * r["start_accuracy"], 100 * r["final_accuracy"]) for r in by_seed.values()]
            budget = next(iter(by_seed.values()))["budget"]
            rows.append([lb, name, ", ".join(map(str, sorted(by_seed))), budget,
                         " / ".join(_f(_mean(q), "{:.4f}") for q in quarters["kl"]),
                         " / ".join(_f(_mean(q), "{:.3f}") for q in quarters["reward"]),
                         f"{_mean([a for a, _ in acc]):.1f} → {_mean([b for _, b in acc]):.1f}"])
    return md_table(["algorithm", "setting", "seeds", "budget (completions)",
                     "KL to the reference, by quarter of the run", "reward of the samples, by quarter",
                     "test acc % start → end"], rows)


def _paired(by_seed: dict, base: dict, is_base: bool) -> str:
    """'mean [low, high] (per seed)' of final test accuracy minus `base`'s on the same seeds, in points."""
    diffs = [100 * (r["final_accuracy"] - base[s]["final_accuracy"]) for s, r in by_seed.items() if s in base]
    if is_base:
        return "— (baseline)"
    if not diffs:
        return "no paired run"
    if len(diffs) == 1:
        return f"{diffs[0]:+.1f} (one seed)"
    return "{:+.1f} [{:+.1f}, {:+.1f}]".format(*interval(diffs)) + " (" + ", ".join(f"{d:+.1f}" for d in diffs) + ")"


def full_budget(task: str, grpo_setting: str, group: str = "full", default_setting: str = "lr=0.0001") -> str:
    """The runs at the full budget in `raw_dir(task, group)`: test accuracy at the sweep's budget (the first evaluation
    at or past 3,200 completions) and at the end, each paired on the same seeds against GRPO at `grpo_setting` (the
    sweep's choice) and against GRPO at `default_setting` (TRL's default loss, which root_causes.md section 5 found
    the steadier at this budget; both are shown because the second was picked after seeing long runs). Other GRPO
    settings get rows of their own, paired the same way."""
    runs, _ = load_runs(raw_dir(task, group))
    grpo = runs.get("grpo", {}).get(grpo_setting, {})
    default = runs.get("grpo", {}).get(default_setting, {})
    rows = []
    for lb in [lb for lb in VARIANTS if lb in runs] + sorted(set(runs) - set(VARIANTS)):
        for name, by_seed in sorted(runs[lb].items(), key=lambda item: item[0] != grpo_setting):
            at_sweep = [_accuracy_at(r, 3200) for r in by_seed.values()]
            r0 = next(iter(by_seed.values()))
            rows.append([lb, name, ", ".join(map(str, sorted(by_seed))), r0["budget"],
                         f"{_mean([100 * r['start_accuracy'] for r in by_seed.values()]):.1f}",
                         _f(_mean([None if a is None else 100 * a for a in at_sweep])),
                         f"{_mean([100 * r['final_accuracy'] for r in by_seed.values()]):.1f}",
                         _paired(by_seed, grpo, lb == "grpo" and name == grpo_setting),
                         _paired(by_seed, default, lb == "grpo" and name == default_setting),
                         f"{_mean([r['train_seconds'] for r in by_seed.values()]):.0f}"])
    return md_table(["algorithm", "setting", "seeds", "budget (completions)", "start acc %", "acc % at 3,200",
                     "final test acc %", f"vs GRPO {grpo_setting} (the sweep's choice): mean [95% CI] (per seed)",
                     f"vs GRPO {default_setting} (TRL's default loss)", "train s"], rows)


def _accuracy_at(run: dict, completions: int) -> float | None:
    """Test accuracy at the first evaluation at or past `completions` generated completions (None if none)."""
    curve = run.get("curve", {})
    return next((a for c, a in zip(curve.get("completions", []), curve.get("accuracy", [])) if c >= completions), None)


def setting_name(run: dict) -> str:
    """'lr=0.0001' or 'lr=0.0002,keep_fraction=0.25': the learning rate and the knobs a run was made with."""
    knobs = ",".join(f"{k}={v}" for k, v in sorted(run.get("knobs", {}).items()))
    return f"lr={run.get('lr', 1e-4):g}" + (f",{knobs}" if knobs else "")


def load_runs(folder: Path) -> tuple[dict, dict]:
    """({label: {setting: {seed: run}}}, {seed: sft info}) from every raw file under `folder`/seed*/."""
    runs, sft = {}, {}
    for seed_dir in sorted(folder.glob("seed*")):
        if not (seed_dir / "sft.json").is_file():
            continue
        for path in sorted(seed_dir.glob("*.json")):
            if path.stem == "sft":
                continue
            run = json.loads(path.read_text())
            runs.setdefault(run["label"], {}).setdefault(setting_name(run), {})[run["seed"]] = run
            sft[run["seed"]] = json.loads((seed_dir / "sft.json").read_text())
    return runs, sft


def choose(settings: dict[str, dict[int, dict]]) -> tuple[str, dict]:
    """The setting with the best mean final dev accuracy over the seeds that ran every setting (ties: the default).
    Returns (setting, {"dev": {setting: mean dev accuracy %}, "sweep_seeds": [...]})."""
    with_dev = [{s for s, r in by_seed.items() if "final_dev_accuracy" in r} for by_seed in settings.values()]
    common = sorted(set.intersection(*with_dev)) if with_dev else []
    dev = {name: 100 * statistics.mean(by_seed[s]["final_dev_accuracy"] for s in common)
           for name, by_seed in settings.items()} if common else {}
    if dev:
        best = max(dev, key=lambda n: (round(dev[n], 6), n == DEFAULT))
    else:  # runs without a dev score (older raw files): no choice to make beyond the default
        best = DEFAULT if DEFAULT in settings else max(settings, key=lambda n: len(settings[n]))
    return best, {"dev": dev, "sweep_seeds": common}


def interval(diffs: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): the 95% t-interval of the mean of paired differences (nan bounds for fewer than 2)."""
    m = statistics.mean(diffs)
    if len(diffs) < 2:
        return m, float("nan"), float("nan")
    half = T95.get(len(diffs) - 1, 1.96) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return m, m - half, m + half


def _kl_key(log: list[dict]) -> str | None:
    """The logged KL to the reference: TRL's `kl` (beta > 0), `ppo/kl`, or an estimator's `<name>/kl_reward`."""
    return next((k for k in (log[-1] if log else {}) if k == "kl" or k.endswith(("/kl", "kl_reward"))), None)


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.mean(xs) if xs else None


def claims(run: dict, grpo_run: dict | None) -> dict:
    """Each paper's own metric from one run's per-step log (None where the run did not log it)."""
    log = run.get("log", [])
    wrong = [w for w in run.get("wrong_completion_length", []) if w is not None]
    # TRL logs frac_reward_zero_std once per generation round (all rounds hold the same number of groups), so its
    # step mean is the zero-signal share of every group generated. Dynamic sampling trains only groups with signal,
    # plus zero-signal 'filled' groups (masked out) when it hits its round cap.
    generated = [e["frac_reward_zero_std"] for e in log if "frac_reward_zero_std" in e]
    trained = [e["dapo/groups_filled"] / max(e["dapo/groups_kept"] + e["dapo/groups_filled"], 1)
               if "dapo/groups_kept" in e else e.get("frac_reward_zero_std") for e in log]
    kl_key = _kl_key(log)
    kl = _mean([e.get(kl_key) for e in log[-5:]]) if kl_key else None
    grads = [e["grad_norm"] for e in log if "grad_norm" in e]
    reach = None
    if grpo_run is not None:
        target = grpo_run["final_accuracy"]
        reach = next((c for c, a in zip(run["curve"]["completions"], run["curve"]["accuracy"]) if c and a >= target),
                     None)
    return {
        "wrong_len_first": _mean(wrong[:5]), "wrong_len_last": _mean(wrong[-5:]),
        "zero_signal_generated": _mean(generated), "zero_signal_trained": _mean(trained), "kl_last": kl,
        "grad_norm_cv": (statistics.stdev(grads) / statistics.mean(grads)
                         if len(grads) > 1 and statistics.mean(grads) else None),
        "generation_share": run["generation_seconds"] / run["train_seconds"] if run["train_seconds"] else None,
        "seconds_per_step": run["train_seconds"] / max(run["steps"], 1),
        "gain_per_100s": 100 * 100 * (run["final_accuracy"] - run["start_accuracy"]) / max(run["train_seconds"], 1e-9),
        "completions_to_grpo_final": reach,
    }


def mean_claims(by_seed: dict, base: dict) -> dict:
    """`claims` averaged over seeds, each seed against GRPO's chosen run of that seed."""
    per = [claims(r, base.get(seed)) for seed, r in sorted(by_seed.items())]
    mean = {k: _mean([c[k] for c in per]) for k in per[0]}
    mean["reached_grpo_final"] = f"{sum(c['completions_to_grpo_final'] is not None for c in per)}/{len(per)}"
    return mean


def summarise(runs: dict) -> tuple[dict, dict]:
    """({label: summary}, {label: {seed: chosen run}})."""
    chosen, summary = {}, {}
    labels = [lb for lb in VARIANTS if lb in runs] + sorted(set(runs) - set(VARIANTS))
    for lb in labels:
        setting, sweep = choose(runs[lb])
        chosen[lb] = runs[lb][setting]
        summary[lb] = {"setting": setting, "sweep": sweep, "seeds": sorted(chosen[lb])}
    base = chosen.get("grpo", {})
    for lb in labels:
        by_seed = chosen[lb]
        acc = [100 * r["final_accuracy"] for r in by_seed.values()]
        gain = [100 * (r["final_accuracy"] - r["start_accuracy"]) for r in by_seed.values()]
        s = summary[lb]
        s.update(start_accuracy_mean=_mean([100 * r["start_accuracy"] for r in by_seed.values()]),
                 final_accuracy_mean=statistics.mean(acc),
                 final_accuracy_std=statistics.stdev(acc) if len(acc) > 1 else 0.0, gain_mean=statistics.mean(gain),
                 train_seconds_mean=_mean([r["train_seconds"] for r in by_seed.values()]),
                 completions_mean=_mean([r["completions"] for r in by_seed.values()]),
                 steps_mean=_mean([r["steps"] for r in by_seed.values()]),
                 n_test=min(r.get("n_eval", 200) for r in by_seed.values()))
        s["claims"] = mean_claims(by_seed, base)
        diffs = {seed: 100 * (r["final_accuracy"] - base[seed]["final_accuracy"]) for seed, r in by_seed.items()
                 if seed in base}
        if lb == "grpo" or not diffs:
            s["verdict"] = "baseline" if lb == "grpo" else "no paired GRPO run"
            continue
        m, lo, hi = interval(list(diffs.values()))
        verdict = ("too few seeds" if len(diffs) < 2 else "better" if lo > 0 else "worse" if hi < 0 else "within noise")
        s.update(vs_grpo=m, vs_grpo_ci=[lo, hi], vs_grpo_per_seed={k: round(v, 1) for k, v in sorted(diffs.items())},
                 verdict=verdict)
    return summary, chosen


def claim_sets(summary: dict, runs: dict, chosen: dict) -> list[tuple[str, dict]]:
    """(row name, mean claims) for each algorithm's chosen setting, plus every knob setting that was not chosen (e.g.
    GRPO with loss_type=grpo, the comparison Dr.GRPO's claim names), each over all of its seeds."""
    out = []
    base = chosen.get("grpo", {})
    for lb, s in summary.items():
        out.append((lb, s["claims"]))
        for name, by_seed in runs[lb].items():
            if name != s["setting"] and "," in name:  # a knob setting (lr-only settings are just the sweep)
                out.append((f"{lb} @ {name} (not chosen; seeds {sorted(by_seed)})", mean_claims(by_seed, base)))
    return out


def _f(x, fmt="{:.1f}"):
    return "—" if x is None else fmt.format(x)


def write(task: str, command: str | None, group: str | None = None) -> str:
    """The report of the task's runs (`group`: of the runs in that group's folder, e.g. 'rerun'; its full-budget runs
    are then in group '<group>_full')."""
    import math

    runs, sft = load_runs(raw_dir(task, group))
    if not runs:
        sys.exit(f"No raw results in {raw_dir(task, group)}: run benchmarks/learning.py first.")
    summary, chosen = summarise(runs)
    out = RESULTS / "_".join(["learning"] + ([task] if task != "addition" else []) + ([group] if group else []))
    long_group, full_group = (None, f"{group}_full") if group else ("long", "full")
    any_run = next(iter(next(iter(runs.values())).values())).get(min(sft))
    meta = {"task": task, "budget_completions": (any_run or {}).get("budget"), "sft": sft, "command": command,
            "machine": machine()}
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "summary": summary}, indent=1))
    _plot(chosen, out.with_suffix(".png"))

    rows = []
    for lb, s in summary.items():
        ci = s.get("vs_grpo_ci", [math.nan, math.nan])
        vs = "—" if "vs_grpo" not in s else (
            f"{s['vs_grpo']:+.1f} [{ci[0]:+.1f}, {ci[1]:+.1f}] ("
            + ", ".join(f"{d:+.1f}" for d in s["vs_grpo_per_seed"].values()) + ")")
        rows.append([lb, s["setting"], len(s["seeds"]), _f(s["start_accuracy_mean"]),
                     f"{s['final_accuracy_mean']:.1f} ± {s['final_accuracy_std']:.1f}", f"{s['gain_mean']:+.1f}", vs,
                     s["verdict"], _f(s["train_seconds_mean"], "{:.0f}")])
    claim_rows = []
    for lb, c in claim_sets(summary, runs, chosen):
        zero = f"{_f(c['zero_signal_generated'], '{:.2f}')} / {_f(c['zero_signal_trained'], '{:.2f}')}"
        claim_rows.append([lb, f"{_f(c['wrong_len_first'])} → {_f(c['wrong_len_last'])}", zero,
                           _f(c["kl_last"], "{:.4f}"), _f(c["grad_norm_cv"], "{:.2f}"),
                           _f(c["generation_share"], "{:.0%}"),
                           _f(c["seconds_per_step"], "{:.2f}"), _f(c["gain_per_100s"], "{:+.1f}"),
                           f"{_f(c['completions_to_grpo_final'], '{:.0f}')} ({c['reached_grpo_final']})"])
    sweep_names = sorted({n for s in summary.values() for n in s["sweep"]["dev"]})
    bold = lambda text, on: f"**{text}**" if on else text
    sweep_rows = [[lb] + [bold(_f(s["sweep"]["dev"].get(n)), n == s["setting"]) for n in sweep_names]
                  + [", ".join(map(str, s["sweep"]["sweep_seeds"])) or "—"] for lb, s in summary.items()]
    n_test = min(s["n_test"] for s in summary.values())
    text = [
        f"# Learning at an equal budget of generated completions ({task} task)",
        "",
        (f"Budget {meta['budget_completions']} generated completions per run (DAPO's extra rounds and ReMax's greedy "
         f"baselines count), greedy accuracy on {n_test} held-out test problems. Each algorithm runs at the setting "
         "that won its sweep on the *dev* split (bold below); the test split was not used to choose. 'vs GRPO' is the "
         "per-seed difference to GRPO at GRPO's own chosen setting (same seed, SFT start and test problems), its mean "
         "and 95% t-interval; the verdict is 'better' or 'worse' only when the interval excludes 0."),
        "",
        md_table(["algorithm", "chosen setting", "seeds", "start acc %", "final test acc % (mean ± std)", "gain",
                  "vs GRPO, points: mean [95% CI] (per seed)", "verdict", "train s"], rows),
        "",
        f"![learning curves]({out.name}.png)",
        "",
        "## Each paper's own claim, at the chosen settings (mean over seeds)",
        "",
        md_table(["algorithm", "wrong-completion length, first → last 5 steps (Dr.GRPO)",
                  "zero-signal group share: generated / trained (DAPO)", "KL, last 5 steps (REINFORCE++)",
                  "grad-norm CV over steps (ReMax)",
                  "generation share of time (ReMax)", "s / step (RAFT)", "gain per 100 s (RAFT)",
                  "completions to GRPO's final acc (DAPO; seeds that reached it)"], claim_rows),
        "",
        ("Wrong-completion length: mean tokens of the sampled completions the correctness reward scored wrong. "
         "Zero-signal share: groups whose rewards were all equal, among all generated groups (every round of dynamic "
         "sampling) and among the groups the loss was computed on. "
         "Grad-norm CV: standard deviation over mean of the gradient norm across steps, a proxy for the variance of "
         "the gradient signal (`gradient_variance.md` measures it directly). Times are from a shared 2-core "
         "machine running two single-threaded jobs, so "
         "indicative only."),
        "",
        "## The sweep: mean final dev accuracy % over the sweep seeds",
        "",
        md_table(["algorithm"] + sweep_names + ["sweep seeds"], sweep_rows) if sweep_names
        else "No sweep: these runs have no dev-split scores (made before the sweep existed).",
        "",
    ]
    if long_group and raw_dir(task, long_group).is_dir() and load_runs(raw_dir(task, long_group))[0]:
        text += ["## REINFORCE++'s claim: stability over a run twice as long", "", stability(task), "",
                 ("KL: REINFORCE++'s k1 KL in the reward (`reinforce_pp/kl_reward`), TRL's `kl` where beta > 0; "
                  "GRPO here runs without a KL term (beta 0), so it has none to report."), ""]
    if raw_dir(task, full_group).is_dir() and load_runs(raw_dir(task, full_group))[0]:
        text += ["## The full budget: 19,200 completions (300 GRPO steps of 64, the former demo length)", "",
                 full_budget(task, summary["grpo"]["setting"], group=full_group), "",
                 ("Each algorithm at the setting its sweep chose, plus other settings where they were run (rows of their "
                  f"own), on the seeds the machine allowed; raw runs in `learning_raw/{full_group}/`. The intervals are 95% "
                  "t-intervals over the paired seeds: with 2-3 seeds they are too wide to conclude anything from, and "
                  "the per-seed differences are the result. Two GRPO baselines: the sweep's choice, and TRL's default "
                  "loss, which `root_causes.md` section 5 found steadier at this budget; the second was picked after "
                  "seeing long runs, so both pairings are shown."), ""]
    text += [f"Command: `{command}`"]
    out.with_suffix(".md").write_text("\n".join(text) + "\n")
    return "\n".join(text)


def _plot(chosen: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    colors = plt.cm.tab10(np.linspace(0, 1, 10))
    for i, (lb, by_seed) in enumerate(chosen.items()):
        runs = list(by_seed.values())
        style = {"color": "black", "lw": 2.5} if lb == "grpo" else {"color": colors[i % 10], "lw": 1.4}
        n = min(len(r["curve"]["completions"]) for r in runs)
        xs = np.mean([r["curve"]["completions"][:n] for r in runs], axis=0)
        acc = 100 * np.array([r["curve"]["accuracy"][:n] for r in runs])
        name = "grpo (baseline)" if lb == "grpo" else lb
        axes[0].plot(xs, acc.mean(0), marker="o", ms=3, label=name, **style)
        if len(runs) > 1:
            sd = acc.std(0, ddof=1)
            axes[0].fill_between(xs, acc.mean(0) - sd, acc.mean(0) + sd, color=style["color"], alpha=0.08)
        secs = np.mean([r["curve"]["seconds"][:n] for r in runs], axis=0)
        axes[1].plot(secs, acc.mean(0), marker="o", ms=3, label=name, **style)
    axes[0].set(xlabel="generated completions", ylabel="held-out greedy test accuracy (%)",
                title="accuracy vs completions (mean ± std over seeds)")
    axes[1].set(xlabel="training seconds (shared 2-core CPU)", ylabel="held-out greedy test accuracy (%)",
                title="accuracy vs training time")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
