"""Learning curves: TRL's GRPOTrainer against every trl-plus algorithm, at an equal budget of generated completions.

Every run starts from the same SFT-warmed tiny model (SFT once per seed, saved and reused), on the same generated
2-digit addition task in the GSM8K answer format (the demo's task, reward and RL settings: 8 prompts x 8
completions per step, lr 1e-4, temperature 1, max 28 completion tokens), with the same seed. A run stops when it has
generated `--budget` completions, counted at generation itself, so DAPO's dynamic-sampling rounds and ReMax's greedy
baseline completions count too. Held-out greedy accuracy on 200 test problems is measured every `--eval-every`
completions (evaluation time is excluded from the reported seconds).

Full setting (issue 7): `python benchmarks/learning.py --seeds 0 1 2 --budget 19200`
(19200 completions = the demo's 300 GRPO steps). Seeds can run as separate processes, and algorithms too (`--algos`), each
run writing `results/learning_raw/seed{S}/{algo}.json`; `--report` then aggregates whatever raw files exist into
`results/learning.{json,md,png}`.

Evidence runs (issue 17): `--task chain` (the multi-step task, `trl_plus.data.generate_chain_problems`, raw files
under `learning_raw/chain/`), `--n-test 1000` held-out problems, `--lr` and `--set KEY=VALUE` (an algorithm's own
knob) for the sweep, `--split dev` to score a sweep on the dev split instead of the test split. A run with
non-default settings is written as `{algo}@{settings}.json`; the report reads the default-settings files. Every raw
file also keeps the per-step training log (reward, KL, lengths, zero-signal groups, ...) and, for the
correctness reward, the mean length of the sampled completions that were wrong, so each paper's own claim can be
read off the same runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    RESULTS,
    VARIANTS,
    GenerationMeter,
    machine,
    make_trainer,
    md_table,
    pin_threads,
    reward_funcs_and_weights,
)

RAW = RESULTS / "learning_raw"


def task_rows(task: str, n: int, seed: int) -> list[dict]:
    """`n` problems of `task` ('addition': the demo's 2-digit additions; 'chain': 2-4 step problems)."""
    from trl_plus.data import generate_chain_problems, generate_problems

    return generate_problems(n, seed=seed) if task == "addition" else generate_chain_problems(n, seed=seed)


# Train, dev and test problems come from disjoint seeds of the generator.
SPLIT_SEED = {"train": 0, "dev": 1_000_003, "test": 2_000_003}
MAX_COMPLETION = {"addition": 28, "chain": 64}


def sft_model(seed: int, cache: Path, settings, task: str = "addition"):
    """SFT-warm the tiny model once per seed and task (the demo's SFT: stop at 35% dev accuracy); reuse it."""
    from trl_plus.demo import sft_warmup, tiny_model_path

    path = cache / (f"sft-seed{seed}" if task == "addition" else f"sft-{task}-seed{seed}")
    info = path / "sft.json"
    if info.is_file():
        return path, json.loads(info.read_text())
    train_rows = task_rows(task, settings.n_train, seed)
    dev_rows = task_rows(task, settings.n_dev, seed + SPLIT_SEED["dev"])
    start = time.perf_counter()
    model, tok, steps = sft_warmup(tiny_model_path(settings), train_rows, dev_rows, settings)
    meta = {"sft_steps": steps, "sft_seconds": round(time.perf_counter() - start, 1)}
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    info.write_text(json.dumps(meta))
    return path, meta


LOGGED = ("reward", "frac_reward_zero_std", "completions/mean_length", "kl", "entropy", "step_time", "ppo/", "gae/",
          "dapo/", "dynamic_sampling/", "rahf/", "remax/", "reinforce_pp/", "process/")


class WrongLengths:
    """Wraps the correctness reward to record the mean length in tokens of the sampled completions it scored as
    wrong, per call: Dr.GRPO's claim is that GRPO's length normalisation lets them grow."""

    def __init__(self, fn):
        self.fn, self.__name__, self.means = fn, getattr(fn, "__name__", "gsm8k_correctness"), []

    def __call__(self, prompts, completions, **kwargs):
        scores = self.fn(prompts=prompts, completions=completions, **kwargs)
        ids = kwargs.get("completion_ids") or completions  # TRL passes the token ids to reward functions
        wrong = [len(c) for c, r in zip(ids, scores) if not (r or 0) > 0]
        self.means.append(sum(wrong) / len(wrong) if wrong else None)
        return scores


def settings_suffix(lr: float, knobs: dict, split: str) -> str:
    """'' for the default settings, else '@lr=3e-4,key=value,dev' (the raw file's name after the algorithm)."""
    parts = ([] if lr == 1e-4 else [f"lr={lr:g}"]) + [f"{k}={v}" for k, v in sorted(knobs.items())]
    parts += [] if split == "test" else [split]
    return "@" + ",".join(parts) if parts else ""


def run_one(label: str, seed: int, sft_path: Path, budget: int, eval_every: int, work: Path, *, task="addition",
            lr=1e-4, knobs=None, split="test", n_eval=200) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, set_seed

    from trl_plus.data import to_prompt_dataset
    from trl_plus.demo import DemoSettings, greedy_accuracy

    s = DemoSettings(seed=seed)
    train_rows = task_rows(task, s.n_train, seed)
    eval_rows = task_rows(task, n_eval, seed + SPLIT_SEED[split])
    max_len = MAX_COMPLETION[task]
    set_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(sft_path)
    tok = AutoTokenizer.from_pretrained(sft_path)
    funcs, weights = reward_funcs_and_weights()
    wrong = WrongLengths(funcs[0])
    steps_cap = 4 * budget // (s.rl_prompts_per_step * s.num_generations) + 10
    trainer = make_trainer(label, model, tok, to_prompt_dataset(train_rows, system_prompt=None, conversational=False),
                           str(work / f"{label}-seed{seed}"), seed=seed, max_steps=steps_cap, lr=lr,
                           max_completion_length=max_len, reward_funcs=[wrong, *funcs[1:]], reward_weights=weights,
                           **(knobs or {}))
    accuracy = lambda m: greedy_accuracy(m, tok, eval_rows, max_len)
    meter = GenerationMeter(trainer)
    curve = {"completions": [0], "seconds": [0.0], "accuracy": [accuracy(model)]}
    rewards = {"completions": [], "reward": []}
    logged: list[dict] = []
    clock = {"train": 0.0, "last": None}
    weights = dict(zip(["gsm8k_correctness", "gsm8k_format"], trainer.args.reward_weights[:2]))

    class Budget(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            clock["last"] = time.perf_counter()

        def on_step_end(self, args, state, control, model=None, **kw):
            clock["train"] += time.perf_counter() - clock["last"]
            done = meter.completions >= budget
            if done or meter.completions >= curve["completions"][-1] + eval_every:
                curve["completions"].append(meter.completions)
                curve["seconds"].append(round(clock["train"], 2))
                curve["accuracy"].append(accuracy(model))
            if done:
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kw):
            # The demo's reward (1.0 correct + 0.1 format) of the *sampled* completions, the same for every
            # algorithm (ps_grpo's step rewards and DAPO's overlong term are left out).
            keys = [f"rewards/{n}/mean" for n in weights]
            if logs and all(k in logs for k in keys):
                rewards["completions"].append(meter.completions)
                rewards["reward"].append(sum(w * logs[f"rewards/{n}/mean"] for n, w in weights.items()))
                logged.append({"step": state.global_step, "completions": meter.completions,
                               **{k: round(float(v), 5) for k, v in logs.items()
                                  if isinstance(v, (int, float)) and k.startswith(LOGGED)}})

    trainer.add_callback(Budget())
    trainer.train()
    shutil.rmtree(work / f"{label}-seed{seed}", ignore_errors=True)
    return {
        "label": label, "seed": seed, "task": task, "lr": lr, "knobs": knobs or {}, "split": split,
        "n_eval": len(eval_rows), "steps": trainer.state.global_step, "completions": meter.completions,
        "train_seconds": round(clock["train"], 1), "generation_seconds": round(meter.seconds, 1),
        "final_accuracy": curve["accuracy"][-1], "start_accuracy": curve["accuracy"][0],
        "curve": curve, "reward_curve": rewards, "log": logged,
        "wrong_completion_length": [None if m is None else round(m, 2) for m in wrong.means],
    }


def run(args) -> None:
    from trl_plus.demo import DemoSettings

    cache = Path(args.cache)
    knobs = dict(parse_knob(k) for k in args.set)
    suffix = settings_suffix(args.lr, knobs, args.split)
    for seed in args.seeds:
        folder = raw_dir(args.task) / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        settings = DemoSettings(seed=seed, out_dir=str(cache / f"sft-work-{seed}"), cache_dir=str(cache / "tiny"),
                                max_completion_length=MAX_COMPLETION[args.task])
        sft_path, sft_meta = sft_model(seed, cache, settings, args.task)
        (folder / "sft.json").write_text(json.dumps(sft_meta))
        for label in args.algos:
            path = folder / f"{label}{suffix}.json"
            if path.is_file() and json.loads(path.read_text())["budget"] == args.budget and not args.force:
                continue
            print(f"[learning] {args.task} seed {seed} {label}{suffix} (load {machine()['load_average_1_5_15']})",
                  flush=True)
            result = run_one(label, seed, sft_path, args.budget, args.eval_every, cache / "rl-work", task=args.task,
                             lr=args.lr, knobs=knobs, split=args.split, n_eval=args.n_test)
            result.update(budget=args.budget, eval_every=args.eval_every,
                          load_average_after=machine()["load_average_1_5_15"])
            path.write_text(json.dumps(result, indent=1))
            print(f"[learning] seed {seed} {label}: acc {result['start_accuracy']:.3f} -> "
                  f"{result['final_accuracy']:.3f}, {result['completions']} completions, "
                  f"{result['train_seconds']} s", flush=True)


def raw_dir(task: str) -> Path:
    return RAW if task == "addition" else RAW / task


def parse_knob(text: str) -> tuple[str, object]:
    """'KEY=VALUE' with VALUE read as JSON when it parses (numbers, true/false), else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        sys.exit(f"--set takes KEY=VALUE (got {text!r}), e.g. --set advantage_scale=0.5")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _load_raw(task: str = "addition") -> list[dict]:
    raws = []
    for folder in sorted(raw_dir(task).glob("seed*")):
        if not folder.is_dir() or not (folder / "sft.json").is_file():
            continue
        sft = json.loads((folder / "sft.json").read_text())
        # Default settings only: sweep runs carry '@' in their names and are read by the sweep's own report.
        runs = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json") if p.stem != "sft" and "@" not in p.stem}
        if runs:
            any_run = next(iter(runs.values()))
            raws.append({"seed": any_run["seed"], "runs": runs, "sft_steps": sft["sft_steps"],
                         "sft_seconds": sft["sft_seconds"], "budget": any_run["budget"],
                         "eval_every": any_run["eval_every"]})
    return raws


def _mean_std(xs):
    import statistics

    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def report(args) -> None:
    import numpy as np

    raws = _load_raw(args.task)
    if not raws:
        sys.exit(f"No raw results in {raw_dir(args.task)}: run the benchmark first.")
    out = RESULTS / ("learning" if args.task == "addition" else f"learning_{args.task}")
    n_eval = min(x.get("n_eval", 200) for r in raws for x in r["runs"].values())
    noise_points = 100 * (0.25 / n_eval) ** 0.5  # binomial noise of one accuracy near 50%
    labels = [lb for lb in VARIANTS if any(lb in r["runs"] for r in raws)]
    summary = {}
    for lb in labels:
        runs = [r["runs"][lb] for r in raws if lb in r["runs"]]
        acc = [x["final_accuracy"] * 100 for x in runs]
        start = [x["start_accuracy"] * 100 for x in runs]
        gain = [a - b for a, b in zip(acc, start)]
        summary[lb] = {
            "seeds": [x["seed"] for x in runs],
            "start_accuracy_mean": _mean_std(start)[0],
            "final_accuracy_mean": _mean_std(acc)[0], "final_accuracy_std": _mean_std(acc)[1],
            "gain_mean": _mean_std(gain)[0], "gain_std": _mean_std(gain)[1],
            "completions_mean": _mean_std([x["completions"] for x in runs])[0],
            "steps_mean": _mean_std([x["steps"] for x in runs])[0],
            "seconds_mean": _mean_std([x["train_seconds"] for x in runs])[0],
            "seconds_std": _mean_std([x["train_seconds"] for x in runs])[1],
            "final_reward_mean": _mean_std([np.mean(x["reward_curve"]["reward"][-5:]) for x in runs])[0],
        }
    base = summary.get("grpo")
    # Paired by seed (same SFT start): difference of final accuracy to the baseline's.
    for lb in labels:
        if base is None:
            break
        diffs = []
        for r in raws:
            if lb in r["runs"] and "grpo" in r["runs"]:
                diffs.append((r["runs"][lb]["final_accuracy"] - r["runs"]["grpo"]["final_accuracy"]) * 100)
        m, sd = _mean_std(diffs) if diffs else (float("nan"), 0.0)
        noise = noise_points * 2 ** 0.5 / max(len(diffs), 1) ** 0.5
        consistent = bool(diffs) and (all(d > 0 for d in diffs) or all(d < 0 for d in diffs))
        m_r = round(m, 1)  # the table shows 0.1 points: a difference at the threshold is not a verdict
        verdict = ("baseline" if lb == "grpo" else "better" if m_r > noise + 1e-6 and consistent
                   else "worse" if m_r < -noise - 1e-6 and consistent else "within noise")
        summary[lb].update(vs_grpo_points=m, vs_grpo_std=sd, vs_grpo_noise=noise, verdict=verdict,
                           vs_grpo_per_seed=[round(d, 1) for d in diffs])

    meta = {
        "seeds": sorted({r["seed"] for r in raws}), "budget_completions": raws[0]["budget"],
        "eval_every": raws[0]["eval_every"], "sft": {r["seed"]: {"steps": r["sft_steps"], "seconds": r["sft_seconds"]}
                                                      for r in raws},
        "command": args.command, "machine": machine(),
    }
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "summary": summary}, indent=1))
    _plot(raws, labels, out.with_suffix(".png"))
    rows = []
    for lb in labels:
        s = summary[lb]
        rows.append([lb, f"{s['start_accuracy_mean']:.1f}", f"{s['final_accuracy_mean']:.1f} ± {s['final_accuracy_std']:.1f}",
                     f"{s['gain_mean']:+.1f} ± {s['gain_std']:.1f}",
                     (f"{s['vs_grpo_points']:+.1f} (" + ", ".join(f"{d:+.1f}" for d in s["vs_grpo_per_seed"]) + ")")
                     if lb != "grpo" else "—", s.get("verdict", ""),
                     f"{s['final_reward_mean']:.3f}", f"{s['completions_mean']:.0f}", f"{s['steps_mean']:.0f}",
                     f"{s['seconds_mean']:.0f} ± {s['seconds_std']:.0f}"])
    text = [
        "# Learning curves at an equal budget of generated completions",
        "",
        (f"Seeds {meta['seeds']}, budget {meta['budget_completions']} generated completions per run "
        f"(counted at generation: DAPO's extra rounds and ReMax's greedy baselines included), held-out greedy "
        f"accuracy on {n_eval} test problems every {meta['eval_every']} completions. Reward and RL settings are "
        "the demo's (8 prompts x 8 completions, lr 1e-4, temperature 1, beta 0), on "
        + ("2-digit addition" if args.task == "addition" else f"the {args.task} task") + ". Every run of a "
        "seed starts from the same SFT-warmed model."),
        "",
        md_table(["algorithm", "start acc %", "final acc % (mean ± std)", "gain (points)", "vs TRL GRPO, paired (per seed)",
                  "verdict", "final reward", "completions", "steps", "train seconds"], rows),
        "",
        f"![learning curves]({out.name}.png)",
        "",
        ("Verdict: the paired difference to TRL's GRPO (same seed, same SFT start, same test set) counts as a win "
        f"or a loss only when its mean exceeds the test-set noise of a difference, {noise_points:.1f}·√2/√n points "
        f"with n seeds (each {n_eval}-problem accuracy carries about ±{noise_points:.1f} points) and it has the same "
        "sign in every seed; anything else is 'within noise'. "
        "'final reward' is the demo's reward (1.0 correct + 0.1 format) of the sampled "
        "completions over the last 5 logged steps. Train seconds exclude evaluation and were measured on a shared, "
        f"loaded machine (load average {meta['machine']['load_average_1_5_15']} at report time; per-run load in "
        "the raw files), so they are indicative only."),
        "",
        f"Command: `{args.command}`",
    ]
    out.with_suffix(".md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


def _plot(raws, labels, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    colors = plt.cm.tab10(np.linspace(0, 1, 10))
    for i, lb in enumerate(labels):
        runs = [r["runs"][lb] for r in raws if lb in r["runs"]]
        style = {"color": "black", "lw": 2.5} if lb == "grpo" else {"color": colors[i % 10], "lw": 1.4}
        name = "grpo (TRL baseline)" if lb == "grpo" else lb
        if lb == "dapo":
            name, style = "dapo, no dyn. sampling (= grpo here)", {"color": colors[i % 10], "lw": 1.4, "ls": "--"}
        # accuracy vs completions: mean ± std over seeds at the common eval points
        n = min(len(x["curve"]["completions"]) for x in runs)
        xs = np.mean([x["curve"]["completions"][:n] for x in runs], axis=0)
        acc = np.array([x["curve"]["accuracy"][:n] for x in runs]) * 100
        axes[0].plot(xs, acc.mean(0), marker="o", ms=3, label=name, **style)
        if len(runs) > 1:
            axes[0].fill_between(xs, acc.mean(0) - acc.std(0, ddof=1), acc.mean(0) + acc.std(0, ddof=1),
                                 color=style["color"], alpha=0.08)
        secs = np.mean([x["curve"]["seconds"][:n] for x in runs], axis=0)
        axes[1].plot(secs, acc.mean(0), marker="o", ms=3, label=name, **style)
        # reward vs completions: bin per seed then average
        grid = np.linspace(0, max(x["completions"] for x in runs), 25)
        curves = []
        for x in runs:
            c, r = np.array(x["reward_curve"]["completions"]), np.array(x["reward_curve"]["reward"])
            if len(c):
                k = np.ones(5)  # moving average of 5 logged steps, normalised at the edges
                smooth = np.convolve(r, k, mode="same") / np.convolve(np.ones_like(r), k, mode="same")
                curves.append(np.interp(grid, c, smooth))
        if curves:
            axes[2].plot(grid, np.mean(curves, 0), label=name, **style)
    axes[0].set(xlabel="generated completions", ylabel="held-out greedy accuracy (%)",
                title="accuracy vs completions (mean ± std over seeds)")
    axes[1].set(xlabel="training wall seconds (shared, loaded 2-core CPU)", ylabel="held-out greedy accuracy (%)",
                title="accuracy vs wall time")
    axes[2].set(xlabel="generated completions", ylabel="mean reward of sampled completions",
                title="reward (1.0 correct + 0.1 format), smoothed")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budget", type=int, default=19200, help="generated completions per run (default: the demo's "
                   "300 GRPO steps x 64 = 19200)")
    p.add_argument("--eval-every", type=int, default=3200, help="completions between held-out evaluations")
    p.add_argument("--algos", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "trl-plus-bench"),
                   help="where the SFT-warmed models (one per seed) are saved and reused")
    p.add_argument("--task", choices=sorted(MAX_COMPLETION), default="addition",
                   help="addition (the demo's task) or chain (2-4 step problems)")
    p.add_argument("--n-test", type=int, default=200, help="held-out problems per evaluation (issue 17: >= 1000)")
    p.add_argument("--split", choices=["test", "dev"], default="test", help="score on the test or the dev split "
                   "(a sweep chooses on dev)")
    p.add_argument("--lr", type=float, default=1e-4, help="RL learning rate (default 1e-4, the demo's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config value of the algorithm (its paper's knob), repeatable")
    p.add_argument("--force", action="store_true", help="re-run algorithms already in the raw results")
    p.add_argument("--report", action="store_true", help="only aggregate the raw results into learning.{json,md,png}")
    p.add_argument("--command", default=None, help="the command line(s) to record in the report")
    args = p.parse_args()
    if args.command is None:
        args.command = "python benchmarks/learning.py " + " ".join(sys.argv[1:])
    pin_threads(1)
    if not args.report:
        run(args)
    report(args)


if __name__ == "__main__":
    main()
