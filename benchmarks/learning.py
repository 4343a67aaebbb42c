"""Learning curves: TRL's GRPOTrainer against every trl-plus algorithm, at an equal budget of generated completions.

Every run starts from the same SFT-warmed tiny model (SFT once per seed, saved and reused), on the same generated
2-digit addition task in the GSM8K answer format (the demo's task, reward and RL settings: 8 prompts x 8
completions per step, lr 1e-4, temperature 1, max 28 completion tokens), with the same seed. A run stops when it has
generated `--budget` completions, counted at generation itself, so DAPO's dynamic-sampling rounds and ReMax's greedy
baseline completions count too. Held-out greedy accuracy on 200 test problems is measured every `--eval-every`
completions (evaluation time is excluded from the reported seconds).

Full setting (issue 7): `python benchmarks/learning.py --seeds 0 1 2 --budget 19200`
(19200 completions = 300 GRPO steps of 64, the demo's length until it shipped its warm start). Seeds can run as
separate processes, and algorithms too (`--algos`), each run writing `results/learning_raw/seed{S}/{algo}.json`;
`--report` then aggregates whatever raw files exist into `results/learning.{json,md,png}`.

Evidence runs (issue 17): `--task chain` (the multi-step task, `trl_plus.data.generate_chain_problems`, raw files
under `learning_raw/chain/`), `--n-test 1000` held-out problems, `--lr` and `--set KEY=VALUE` (an algorithm's own
knob) for the sweep. Every run scores greedy accuracy on both a dev split and the test split (disjoint generator
seeds): the report picks each algorithm's setting by its mean final *dev* accuracy over the seeds that ran every
setting, and reports that setting's *test* accuracy over all its seeds, paired against GRPO's chosen setting with a
95% t-interval (`learning_report.py`). A run with non-default settings is written as `{algo}@{settings}.json`.
Every raw file also keeps the per-step training log (reward, KL, lengths, zero-signal groups, grad norm, ...) and,
for the correctness reward, the mean length of the sampled completions that were wrong, so each paper's own claim
can be read off the same runs.
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
    VARIANTS,
    GenerationMeter,
    machine,
    make_trainer,
    pin_threads,
    reward_funcs_and_weights,
)
from learning_report import raw_dir

from trl_plus.demo import SPLIT_SEED  # train, dev and test problems come from disjoint seeds of the generator


def task_rows(task: str, n: int, seed: int) -> list[dict]:
    """`n` problems of `task` ('addition': the demo's 2-digit additions; 'chain': 2-4 step problems)."""
    from trl_plus.data import generate_chain_problems, generate_problems

    return generate_problems(n, seed=seed) if task == "addition" else generate_chain_problems(n, seed=seed)


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


LOGGED = ("reward", "grad_norm", "frac_reward_zero_std", "completions/mean_length", "kl", "entropy", "step_time",
          "ppo/", "gae/",
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


def settings_suffix(lr: float, knobs: dict) -> str:
    """'' for the default settings, else '@lr=3e-4,key=value' (the raw file's name after the algorithm)."""
    parts = ([] if lr == 1e-4 else [f"lr={lr:g}"]) + [f"{k}={v}" for k, v in sorted(knobs.items())]
    return "@" + ",".join(parts) if parts else ""


def run_one(label: str, seed: int, sft_path: Path, budget: int, eval_every: int, work: Path, *, task="addition",
            lr=1e-4, knobs=None, n_eval=200, n_dev=200) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, set_seed

    from trl_plus.data import to_prompt_dataset
    from trl_plus.demo import DemoSettings, greedy_accuracy

    s = DemoSettings(seed=seed, model_size="tiny")
    train_rows = task_rows(task, s.n_train, seed)
    eval_rows = task_rows(task, n_eval, seed + SPLIT_SEED["test"])
    dev_rows = task_rows(task, n_dev, seed + SPLIT_SEED["dev"])
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
    dev_accuracy = lambda m: greedy_accuracy(m, tok, dev_rows, max_len)
    meter = GenerationMeter(trainer)
    curve = {"completions": [0], "seconds": [0.0], "accuracy": [accuracy(model)]}
    dev = {"start": dev_accuracy(model)}  # the sweep needs only the final dev score (and the start, for reference)
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
    dev["final"] = dev_accuracy(trainer.model)
    shutil.rmtree(work / f"{label}-seed{seed}", ignore_errors=True)
    return {
        "label": label, "seed": seed, "task": task, "lr": lr, "knobs": knobs or {},
        "n_eval": len(eval_rows), "n_dev": len(dev_rows), "steps": trainer.state.global_step,
        "completions": meter.completions,
        "train_seconds": round(clock["train"], 1), "generation_seconds": round(meter.seconds, 1),
        "final_accuracy": curve["accuracy"][-1], "start_accuracy": curve["accuracy"][0],
        "final_dev_accuracy": dev["final"], "start_dev_accuracy": dev["start"],
        "curve": curve, "reward_curve": rewards, "log": logged,
        "wrong_completion_length": [None if m is None else round(m, 2) for m in wrong.means],
    }


def run(args) -> None:
    from trl_plus.demo import DemoSettings

    cache = Path(args.cache)
    knobs = dict(parse_knob(k) for k in args.set)
    suffix = settings_suffix(args.lr, knobs)
    for seed in args.seeds:
        folder = raw_dir(args.task, args.group) / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        settings = DemoSettings(seed=seed, out_dir=str(cache / f"sft-work-{seed}"), cache_dir=str(cache / "tiny"),
                                model_size="tiny",
                                max_completion_length=MAX_COMPLETION[args.task])
        sft_path, sft_meta = sft_model(seed, cache, settings, args.task)
        (folder / "sft.json").write_text(json.dumps(sft_meta))
        if args.sft_only:
            continue
        for label in args.algos:
            path = folder / f"{label}{suffix}.json"
            old = json.loads(path.read_text()) if path.is_file() else {}
            if (old.get("budget"), old.get("n_eval"), old.get("n_dev")) == (args.budget, args.n_test, args.n_dev) \
                    and not args.force:
                continue
            print(f"[learning] {args.task} seed {seed} {label}{suffix} (load {machine()['load_average_1_5_15']})",
                  flush=True)
            result = run_one(label, seed, sft_path, args.budget, args.eval_every, cache / "rl-work", task=args.task,
                             lr=args.lr, knobs=knobs, n_eval=args.n_test, n_dev=args.n_dev)
            result.update(budget=args.budget, eval_every=args.eval_every,
                          load_average_after=machine()["load_average_1_5_15"])
            path.write_text(json.dumps(result, indent=1))
            print(f"[learning] seed {seed} {label}: acc {result['start_accuracy']:.3f} -> "
                  f"{result['final_accuracy']:.3f}, {result['completions']} completions, "
                  f"{result['train_seconds']} s", flush=True)


def parse_knob(text: str) -> tuple[str, object]:
    """'KEY=VALUE' with VALUE read as JSON when it parses (numbers, true/false), else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        sys.exit(f"--set takes KEY=VALUE (got {text!r}), e.g. --set advantage_scale=0.5")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budget", type=int, default=19200, help="generated completions per run (default: 300 "
                   "GRPO steps x 64 = 19200, the demo's former length)")
    p.add_argument("--eval-every", type=int, default=3200, help="completions between held-out evaluations")
    p.add_argument("--algos", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "trl-plus-bench"),
                   help="where the SFT-warmed models (one per seed) are saved and reused")
    p.add_argument("--task", choices=sorted(MAX_COMPLETION), default="addition",
                   help="addition (the demo's task) or chain (2-4 step problems)")
    p.add_argument("--n-test", type=int, default=1000, help="held-out test problems per evaluation")
    p.add_argument("--n-dev", type=int, default=1000, help="dev problems per evaluation (the sweep chooses on dev)")
    p.add_argument("--lr", type=float, default=1e-4, help="RL learning rate (default 1e-4, the demo's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config value of the algorithm (its paper's knob), repeatable")
    p.add_argument("--group", default=None, help="write the raw runs to their own folder under the task's (e.g. "
                   "'long' for the stability runs at a longer budget), kept out of the sweep's report")
    p.add_argument("--sft-only", action="store_true", help="only make (or find) each seed's SFT-warmed model")
    p.add_argument("--force", action="store_true", help="re-run algorithms already in the raw results")
    p.add_argument("--report", action="store_true", help="only aggregate the raw results into learning.{json,md,png}")
    p.add_argument("--no-report", action="store_true", help="only run (for concurrent workers; report once later)")
    p.add_argument("--command", default=None, help="the command line(s) to record in the report")
    args = p.parse_args()
    if args.command is None:
        args.command = "python benchmarks/learning.py " + " ".join(sys.argv[1:])
    pin_threads(1)
    if not args.report:
        run(args)
    if not args.no_report:
        from learning_report import write

        print(write(args.task, args.command, args.group))


if __name__ == "__main__":
    main()
