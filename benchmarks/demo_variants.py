"""The demo with other SFT and RL settings, with a learning curve on a tuning split (issue 17, item 7).

    python benchmarks/demo_variants.py --seed 0 --sft sft_batch=32 --rl rl_prompts_per_step=4 \
        --config lr_scheduler_type=constant --curve-every 25

Runs `trl_plus.demo`'s own SFT warm-up (once per seed and SFT setting, saved under `--cache`) and its `rl_train`.
Every `--curve-every` RL steps it scores greedy accuracy on `--n-tune` problems of a *tuning* split (its own seed,
disjoint in draw from the demo's dev and test splits) and records (step, RL seconds without these evaluations,
accuracy), so one run gives the whole curve: the settings are chosen on this split, and the demo's own test split
is only used by `demo_timing.py` for the final claim. Appends one JSON line per run to `--out`.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, pin_threads

TUNE_SEED_OFFSET = 3_000_003  # beyond the demo's own splits (trl_plus.demo.SPLIT_SEED)


def _pairs(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out


def _curve_callback(tok, rows, every: int, curve: list, clock: dict, max_len: int):
    from transformers import TrainerCallback

    from trl_plus.demo import greedy_accuracy

    class Curve(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % every == 0 or state.global_step == state.max_steps:
                t = time.perf_counter()
                acc = greedy_accuracy(model, tok, rows, max_len)
                clock["eval"] += time.perf_counter() - t
                train_s = time.perf_counter() - clock["start"] - clock["eval"]
                curve.append([state.global_step, round(train_s, 1), acc])
                print(f"step {state.global_step}: {train_s:.0f} s, tune acc {acc:.3f}", flush=True)

    return Curve()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sft-seed", type=int, default=None, help="the SFT warm-up's seed (default: --seed); RL, its "
                   "training problems and the tuning split use --seed, as the demo does from its shipped warm start")
    p.add_argument("--algo", default="grpo")
    p.add_argument("--sft", nargs="*", default=[], metavar="KEY=VALUE", help="DemoSettings SFT fields")
    p.add_argument("--rl", nargs="*", default=[], metavar="KEY=VALUE", help="DemoSettings RL fields")
    p.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE", help="RL config fields (e.g. "
                   "lr_scheduler_type=constant, num_iterations=2)")
    p.add_argument("--sft-config", nargs="*", default=[], metavar="KEY=VALUE", help="SFT config fields (e.g. "
                   "adam_beta2=0.98)")
    p.add_argument("--curve-every", type=int, default=25)
    p.add_argument("--n-tune", type=int, default=1000)
    p.add_argument("--sft-only", action="store_true", help="stop after the SFT warm-up (its steps and seconds)")
    p.add_argument("--shape", nargs="*", default=[], metavar="KEY=VALUE", help="a model shape to try (e.g. "
                   "num_hidden_layers=2 intermediate_size=256), over the tiny model's; use it with --sft model_size=NAME")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "trl-plus-bench"))
    p.add_argument("--out", default=str(RESULTS / "demo_variants.jsonl"))
    args = p.parse_args()
    pin_threads(args.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from trl_plus.data import generate_problems
    from trl_plus.demo import DemoSettings, demo_problems, greedy_accuracy, rl_train, sft_warmup, tiny_model_path

    sft, rl, config, sft_config = _pairs(args.sft), _pairs(args.rl), _pairs(args.config), _pairs(args.sft_config)
    shape = _pairs(args.shape)  # part of the cache keys, so a name reused for another shape cannot hit a stale model
    if shape:  # registered for this process only, under the name --sft model_size gives
        from trl_plus.tiny import SIZES

        if sft.get("model_size", "tiny") in SIZES:
            sys.exit("--shape needs a new name: --sft model_size=NAME, NAME not one of " + str(sorted(SIZES)))
        SIZES[sft.get("model_size", "tiny")] = {**SIZES["tiny"], **shape}
    known = {f.name for f in fields(DemoSettings)}
    for key in [*sft, *rl]:
        if key not in known:
            sys.exit(f"unknown DemoSettings field {key!r}; known: {sorted(known)}")
    shape_tag = ",".join(f"{k}={v}" for k, v in sorted(shape.items()))
    sft_tag = ",".join(f"{k}={v}" for k, v in sorted({**sft, **sft_config, **shape}.items())) or "default"
    sft_seed = args.seed if args.sft_seed is None else args.sft_seed
    s = DemoSettings(algo=args.algo, seed=sft_seed, warm_start="sft", **sft, **rl,
                     out_dir=str(Path(args.cache) / f"demo-variant-{args.seed}-{time.time_ns()}"),
                     cache_dir=str(Path(args.cache) / "tiny" / shape_tag))
    train = generate_problems(s.n_train, seed=args.seed)
    tune = generate_problems(args.n_tune, seed=args.seed + TUNE_SEED_OFFSET)
    sft_dir = Path(args.cache) / f"demo-sft-seed{sft_seed}-{sft_tag}"
    info_path = sft_dir / "sft_info.json"
    if not info_path.is_file():
        set_seed(sft_seed)
        sft_train, dev, _ = demo_problems(s)
        t = time.perf_counter()
        model, tok, steps = sft_warmup(tiny_model_path(s), sft_train, dev, s, extra_args=sft_config)
        sft_info = {"sft_steps": steps, "sft_seconds": round(time.perf_counter() - t, 1), "threads": args.threads}
        model.save_pretrained(sft_dir)
        tok.save_pretrained(sft_dir)
        info_path.write_text(json.dumps(sft_info))
    sft_info = json.loads(info_path.read_text())
    if args.sft_only:
        result = {"seed": sft_seed, "sft": sft, "sft_config": sft_config, "shape": shape, "sft_only": True, **sft_info}
        print(json.dumps(result), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(result) + "\n")
        return
    model = AutoModelForCausalLM.from_pretrained(sft_dir)
    tok = AutoTokenizer.from_pretrained(sft_dir)
    s = replace(s, seed=args.seed)  # RL runs on its own seed
    set_seed(args.seed)
    before = greedy_accuracy(model, tok, tune, s.max_completion_length)
    curve: list = [[0, 0.0, before]]
    clock = {"start": time.perf_counter(), "eval": 0.0}
    callback = _curve_callback(tok, tune, args.curve_every, curve, clock, s.max_completion_length)
    rl_train(model, tok, train, s, extra_args=config, callbacks=[callback])
    result = {"seed": args.seed, "sft_seed": sft_seed, "algo": args.algo, "sft": sft, "sft_config": sft_config,
              "shape": shape, "rl": rl,
              "config": config, **sft_info,
              "tune_before": before, "tune_after": curve[-1][2], "n_tune": args.n_tune,
              "rl_seconds": curve[-1][1], "curve": curve, "threads": args.threads,
              "load_average": machine()["load_average_1_5_15"]}
    print(json.dumps(result), flush=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
