"""`trl-plus demo`: the offline end-to-end job (SFT-warmed tiny model, RL, held-out accuracy)."""

from __future__ import annotations

from trl_plus.algorithms import ALGORITHMS
from trl_plus.demo import WARM_STARTS, DemoSettings


def add_parser(sub):
    p = sub.add_parser(
        "demo",
        help="offline CPU demo: SFT-warmed tiny model -> RL -> accuracy before/after",
        description="Train the tiny model that ships SFT-warmed (it writes 2-digit additions in the "
        "<reasoning>/<answer>/#### format and gets about a third right) with RL (--algo) on rule-based rewards, and "
        "report held-out greedy accuracy before and after RL. Offline, CPU, about 2 minutes with the defaults on 2 "
        "cores. --warm_start sft builds the tiny model and runs the SFT warm-up first (80-140 s more). Writes a "
        "reward-curve PNG and a JSON report to --out_dir.",
    )
    p.add_argument("--algo", default="grpo", choices=sorted(ALGORITHMS), metavar="ALGO",
                   help=f"RL algorithm: {', '.join(ALGORITHMS)} (default: grpo)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for the data, the RL run and, with --warm_start sft, the tiny model (default: 0)")
    p.add_argument("--out_dir", default="demo-out", help="where the report and PNG go (default: demo-out)")
    p.add_argument("--report_json", default=None, help="write the JSON report here (default: OUT_DIR/report.json)")
    p.add_argument("--cache_dir", default=None,
                   help="with --warm_start sft: where the tiny model is built once and reused (default: "
                   "$TRL_PLUS_CACHE or ~/.cache/trl-plus)")
    p.add_argument("--rl_steps", type=int, default=DemoSettings.rl_steps,
                   help=f"RL training steps (default: {DemoSettings.rl_steps})")
    p.add_argument("--warm_start", default=DemoSettings.warm_start, choices=WARM_STARTS,
                   help="shipped: RL starts from the SFT-warmed tiny model in the package; sft: build the tiny model "
                   "and run the SFT warm-up here, with the three options below (default: shipped)")
    p.add_argument("--model_size", default=None, metavar="SIZE",
                   help="with --warm_start sft: shape of the tiny model, a name in trl_plus.tiny.SIZES (default: tiny)")
    p.add_argument("--sft_max_steps", type=int, default=None,
                   help=f"with --warm_start sft: upper bound on SFT steps (default: {DemoSettings.sft_max_steps})")
    p.add_argument("--sft_target", type=float, default=None,
                   help="with --warm_start sft: stop SFT once greedy dev accuracy reaches this (default: "
                   f"{DemoSettings.sft_target})")
    p.add_argument("--n_test", type=int, default=200, help="held-out problems for accuracy (default: 200)")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from trl_plus.demo import run_demo
    from trl_plus.errors import UserError
    from trl_plus.tiny import SIZES

    sft_only = {name: getattr(args, name) for name in ("model_size", "sft_max_steps", "sft_target")}
    given = [f"--{name}" for name, value in sft_only.items() if value is not None]
    if given and args.warm_start != "sft":
        raise UserError(f"{', '.join(given)} only apply to the SFT warm-up: add --warm_start sft to run it here "
                        "(the default starts from the shipped warm start).")
    for name in ("rl_steps", "sft_max_steps", "n_test"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UserError(f"--{name} must be >= 1 (got {getattr(args, name)}).")
    if args.sft_target is not None and not 0 < args.sft_target <= 1:
        raise UserError(f"--sft_target must be in (0, 1] (got {args.sft_target}).")
    if args.model_size is not None and args.model_size not in SIZES:
        raise UserError(f"--model_size {args.model_size!r} is not a model size; choose one of {sorted(SIZES)}.")
    settings = DemoSettings(
        algo=args.algo, seed=args.seed, out_dir=args.out_dir, cache_dir=args.cache_dir, rl_steps=args.rl_steps,
        n_test=args.n_test, warm_start=args.warm_start, **{k: v for k, v in sft_only.items() if v is not None},
    )
    run_demo(settings, report_json=args.report_json)
    return 0
