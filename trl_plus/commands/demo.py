"""`trl-plus demo`: the offline end-to-end job (tiny model, SFT warm-up, RL, held-out accuracy)."""

from __future__ import annotations

from trl_plus.algorithms import ALGORITHMS


def add_parser(sub):
    p = sub.add_parser(
        "demo",
        help="offline CPU demo: tiny model -> SFT warm-up -> RL -> accuracy before/after",
        description="Build (or reuse) a tiny model, warm it up with SFT on generated 2-digit additions in the "
        "<reasoning>/<answer>/#### format until it reaches --sft_target dev accuracy, train it with RL "
        "(--algo) on rule-based rewards, and report held-out greedy accuracy before and after RL. Offline, CPU, "
        "about 4-5 minutes with the defaults on 2 cores. Writes a reward-curve PNG and a JSON report to --out_dir.",
    )
    p.add_argument("--algo", default="grpo", choices=sorted(ALGORITHMS), metavar="ALGO",
                   help=f"RL algorithm: {', '.join(ALGORITHMS)} (default: grpo)")
    p.add_argument("--seed", type=int, default=0, help="seed for data, model and training (default: 0)")
    p.add_argument("--out_dir", default="demo-out", help="where the report and PNG go (default: demo-out)")
    p.add_argument("--report_json", default=None, help="write the JSON report here (default: OUT_DIR/report.json)")
    p.add_argument("--cache_dir", default=None,
                   help="where the tiny model is built once and reused (default: $TRL_PLUS_CACHE or ~/.cache/trl-plus)")
    p.add_argument("--model_size", default=None, metavar="SIZE",
                   help="shape of the tiny model, a name in trl_plus.tiny.SIZES (default: the demo's own)")
    p.add_argument("--rl_steps", type=int, default=300, help="RL training steps (default: 300)")
    p.add_argument("--sft_max_steps", type=int, default=1500, help="upper bound on SFT steps (default: 1500)")
    p.add_argument("--sft_target", type=float, default=0.35,
                   help="stop SFT once greedy dev accuracy reaches this (default: 0.35)")
    p.add_argument("--n_test", type=int, default=200, help="held-out problems for accuracy (default: 200)")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from trl_plus.demo import DemoSettings, run_demo
    from trl_plus.errors import UserError
    from trl_plus.tiny import SIZES

    for name in ("rl_steps", "sft_max_steps", "n_test"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be >= 1 (got {getattr(args, name)}).")
    if not 0 < args.sft_target <= 1:
        raise UserError(f"--sft_target must be in (0, 1] (got {args.sft_target}).")
    if args.model_size is not None and args.model_size not in SIZES:
        raise UserError(f"--model_size {args.model_size!r} is not a model size; choose one of {sorted(SIZES)}.")
    settings = DemoSettings(
        algo=args.algo, seed=args.seed, out_dir=args.out_dir, cache_dir=args.cache_dir, rl_steps=args.rl_steps,
        sft_max_steps=args.sft_max_steps, sft_target=args.sft_target, n_test=args.n_test,
        model_size=args.model_size or DemoSettings.model_size,
    )
    run_demo(settings, report_json=args.report_json)
    return 0
