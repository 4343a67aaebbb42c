"""`trl-plus eval CHECKPOINT --tasks gsm8k,gsm8k_reasoning`: score a checkpoint with lm-eval-harness."""

from __future__ import annotations


def _limit(text: str):
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"--limit must be a positive count or a fraction below 1, got {text!r}")
    return int(value) if value.is_integer() else value


def add_parser(sub):
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint or PEFT adapter directory with lm-eval (gsm8k, gsm8k_reasoning, ...)",
        description="Evaluate a model directory (config.json) or a PEFT adapter directory (adapter_config.json, "
        "whose base model comes from it) with lm-eval-harness, print lm-eval's results table and optionally "
        "write per-task exact_match for each filter with its stderr as JSON. Offline, --data_dir points the "
        "GSM8K tasks at local train.jsonl/test.jsonl.",
    )
    p.add_argument("checkpoint", help="model directory, PEFT adapter directory, or hub id (online)")
    p.add_argument("--tasks", default="gsm8k,gsm8k_reasoning",
                   help="comma-separated lm-eval task names (default: gsm8k,gsm8k_reasoning)")
    p.add_argument("--data_dir", help="directory with GSM8K-schema train.jsonl and test.jsonl (fields 'question' "
                   "and 'answer'), used instead of the hub's openai/gsm8k: needed without internet")
    p.add_argument("--limit", type=_limit, help="examples per task; a fraction if below 1 (default: all)")
    p.add_argument("--num_fewshot", type=int, help="few-shot examples (default: each task's own; "
                   "gsm8k_reasoning is always zero-shot)")
    p.add_argument("--batch_size", default="8", help="generation batch size, or 'auto' (default: 8)")
    p.add_argument("--load_in_4bit", action="store_true", help="load the model in 4-bit NF4 (needs bitsandbytes)")
    chat = p.add_mutually_exclusive_group()
    chat.add_argument("--apply_chat_template", dest="apply_chat_template", action="store_true", default=None,
                      help="format prompts with the tokenizer's chat template (default: when it has one)")
    chat.add_argument("--no_chat_template", dest="apply_chat_template", action="store_false",
                      help="plain-text prompts")
    p.add_argument("--system_instruction", help="system instruction put before each task's own prompt")
    p.add_argument("--max_gen_toks", type=int, help="cap on generated tokens per answer (default: each task's)")
    p.add_argument("--output_json", help="write per-task exact_match and stderr for each filter to this file")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    import json
    from pathlib import Path

    from lm_eval.utils import make_table

    from eval.harness import EvalInputError, evaluate
    from trl_plus.errors import UserError

    batch_size = int(args.batch_size) if str(args.batch_size).isdigit() else args.batch_size
    try:
        results = evaluate(args.checkpoint, args.tasks, limit=args.limit, data_dir=args.data_dir,
                           batch_size=batch_size, num_fewshot=args.num_fewshot,
                           apply_chat_template=args.apply_chat_template, system_instruction=args.system_instruction,
                           load_in_4bit=args.load_in_4bit, max_gen_toks=args.max_gen_toks)
    except EvalInputError as e:
        raise UserError(str(e)) from None
    print(make_table(results))
    if results.get("groups"):
        print(make_table(results, "groups"))
    if args.output_json:
        out = Path(args.output_json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary(results, args), indent=2, default=str) + "\n")
        print(f"wrote {out}")
    return 0


def summary(results: dict, args) -> dict:
    """Per task and filter: `{"exact_match": x, "exact_match_stderr": s}` (every metric lm-eval reported)."""
    tasks: dict = {}
    for task, values in results["metrics"].items():
        for key, value in values.items():
            metric, _, filt = key.partition(",")
            tasks.setdefault(task, {}).setdefault(filt, {})[metric] = value
    return {
        "checkpoint": str(args.checkpoint),
        "tasks": tasks,
        "n_samples": results.get("n-samples", {}),
        "n_shot": results.get("n-shot", {}),
        "settings": {"limit": args.limit, "num_fewshot": args.num_fewshot, "data_dir": args.data_dir,
                     "apply_chat_template": results.get("apply_chat_template"), "load_in_4bit": args.load_in_4bit,
                     "max_gen_toks": args.max_gen_toks},
    }
