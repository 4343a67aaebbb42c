"""`trl-plus tiny-model DIR`: write an offline tiny model directory."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser(
        "tiny-model",
        help="write a tiny random Llama model and character tokenizer to DIR (offline)",
        description="Write a complete Hugging Face model directory (config, safetensors, tokenizer with a chat "
        "template) for a tiny randomly initialised Llama. Deterministic for a given --seed.",
    )
    p.add_argument("dir", help="output directory")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed (default: 0)")
    p.add_argument("--size", choices=["tiny", "small"], default="tiny",
                   help="tiny: 1.1M parameters; small: about 5M parameters (default: tiny)")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from trl_plus.tiny import save_tiny_model

    path = save_tiny_model(args.dir, seed=args.seed, size=args.size)
    print(f"wrote tiny model ({args.size}, seed {args.seed}) to {path}")
    return 0
