"""The offline demo: SFT-warmed tiny model -> RL with rule-based rewards -> held-out accuracy.

Everything runs on CPU without the Hub. The task is two-digit addition written in the GSM8K
answer format (`<reasoning>`/`<answer>` with `#### N`), the setting measured to learn in minutes
on 2 cores. The SFT warm-up stops as soon as greedy accuracy on a dev set reaches `sft_target`, so RL
starts from a model that knows the format but is often wrong: the gain after RL comes from the reward.
(With perfect demonstrations, more SFT would also raise accuracy; the demo shows learning from
reward alone, not that RL beats SFT.) By default RL starts from the warm-up's result shipped with the
package (`trl_plus.warm_start`); `warm_start="sft"` builds the tiny model and runs the warm-up here.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

WARM_STARTS = ("shipped", "sft")


@dataclass
class DemoSettings:
    algo: str = "grpo"
    seed: int = 0
    out_dir: str = "demo-out"
    # "shipped": RL starts from the SFT-warmed tiny model in the package (trl_plus.warm_start);
    # "sft": build the tiny model (model_size) and run the SFT warm-up (the sft_* fields) first.
    warm_start: str = "shipped"
    cache_dir: str | None = None  # where the tiny model is built once and reused
    model_size: str = "tiny"  # a name in trl_plus.tiny.SIZES
    n_train: int = 4000
    n_dev: int = 100
    n_test: int = 200
    sft_lr: float = 2e-3
    sft_batch: int = 64
    sft_max_steps: int = 1500
    sft_eval_every: int = 25
    sft_target: float = 0.35
    rl_steps: int = 150
    rl_prompts_per_step: int = 8
    num_generations: int = 8
    rl_lr: float = 1e-4
    max_completion_length: int = 28

    def __post_init__(self):
        if self.warm_start not in WARM_STARTS:
            raise ValueError(f"warm_start={self.warm_start!r}: choose one of {list(WARM_STARTS)}.")
        if self.warm_start == "shipped" and self.model_size != "tiny":
            raise ValueError(f"model_size={self.model_size!r} needs warm_start='sft': the shipped warm start is the "
                             "tiny model.")


# Correctness 2.0 * 0.5 = 1.0 for the right number, format 0.8 * 0.125 = 0.1 for the four tags: a
# right answer dominates, and the format still separates wrong answers (measured to learn in minutes).
REWARDS = {"gsm8k_correctness": 0.5, "gsm8k_format": 0.125}
# The demo's splits come from disjoint seeds of the generator: `settings.seed` plus these offsets.
SPLIT_SEED = {"train": 0, "dev": 1_000_003, "test": 2_000_003}


def demo_problems(settings: DemoSettings) -> tuple[list[dict], list[dict], list[dict]]:
    """The demo's (train, dev, test) problems for `settings.seed`: `n_train`, `n_dev` and `n_test` of them."""
    from trl_plus.data import generate_problems

    return tuple(generate_problems(n, seed=settings.seed + SPLIT_SEED[split])
                 for split, n in (("train", settings.n_train), ("dev", settings.n_dev), ("test", settings.n_test)))


def _log(msg: str) -> None:
    print(f"[trl-plus demo] {msg}", flush=True)


def tiny_model_path(settings: DemoSettings) -> Path:
    from trl_plus.tiny import cached_tiny_model

    return cached_tiny_model(settings.seed, settings.cache_dir, log=_log, size=settings.model_size)


def greedy_accuracy(model, tokenizer, rows: list[dict], max_new_tokens: int = 28, batch_size: int = 100) -> float:
    """Share of `rows` whose greedy completion has the right number after `####`."""
    import torch

    from reward_fns import gsm8k_correctness

    was_training = model.training
    model.eval()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    correct = 0
    try:
        with torch.no_grad():
            for i in range(0, len(rows), batch_size):
                chunk = rows[i : i + batch_size]
                enc = tokenizer([f"{r['question']}\n" for r in chunk], return_tensors="pt", padding=True)
                enc = {k: v.to(model.device) for k, v in enc.items()}
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
                texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
                scores = gsm8k_correctness(prompts=[None] * len(chunk), completions=texts,
                                           answer=[r["answer"] for r in chunk])
                correct += sum(1 for s in scores if s is not None and s > 0)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return correct / max(len(rows), 1)


def _stop_at_target(dev_rows, settings: DemoSettings, history: list):
    from transformers import TrainerCallback

    class StopAtTarget(TrainerCallback):
        """Stops SFT once greedy dev accuracy reaches the target, so RL has room to improve."""

        def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
            if state.global_step % settings.sft_eval_every == 0:
                acc = greedy_accuracy(model, processing_class, dev_rows, settings.max_completion_length)
                history.append((state.global_step, acc))
                if acc >= settings.sft_target:
                    _log(f"SFT step {state.global_step}: dev accuracy {acc:.0%} reached the target; stopping")
                    control.should_training_stop = True

    return StopAtTarget()


def sft_warmup(model_path: Path, train_rows, dev_rows, settings: DemoSettings, callbacks=(), extra_args=None,
               history: list | None = None):
    """SFT until greedy dev accuracy reaches `settings.sft_target`; `extra_args` overrides config fields, and
    `history`, when given, receives the (step, dev accuracy) checks."""
    from trl import SFTConfig, SFTTrainer

    from trl_plus.data import to_sft_dataset

    args = SFTConfig(
        output_dir=str(Path(settings.out_dir) / "sft"), use_cpu=True, bf16=False, seed=settings.seed,
        per_device_train_batch_size=settings.sft_batch, learning_rate=settings.sft_lr,
        lr_scheduler_type="constant", warmup_steps=0, max_steps=settings.sft_max_steps, logging_steps=50,
        save_strategy="no", report_to=[], max_length=128, gradient_checkpointing=False,  # a 1M model: no memory to save
        **(extra_args or {}),
    )
    history = [] if history is None else history
    trainer = SFTTrainer(
        model=str(model_path), args=args, train_dataset=to_sft_dataset(train_rows, None, conversational=False),
        callbacks=[_stop_at_target(dev_rows, settings, history), *callbacks],
    )
    trainer.train()
    return trainer.model, trainer.processing_class, trainer.state.global_step


def rl_train(model, tokenizer, train_rows, settings: DemoSettings, extra_args: dict | None = None, callbacks=()):
    """RL at the demo's settings; `extra_args` overrides config fields, `callbacks` go to the trainer."""
    import reward_fns
    from trl_plus.algorithms import build_trainer, get_algorithm
    from trl_plus.data import to_prompt_dataset

    algo = get_algorithm(settings.algo)
    config_cls, _ = algo.classes()
    args = config_cls(
        output_dir=str(Path(settings.out_dir) / "rl"), use_cpu=True, bf16=False, seed=settings.seed,
        per_device_train_batch_size=settings.rl_prompts_per_step * settings.num_generations,
        num_generations=settings.num_generations, max_completion_length=settings.max_completion_length,
        learning_rate=settings.rl_lr, max_steps=settings.rl_steps, logging_steps=10, save_strategy="no",
        report_to=[], temperature=1.0, reward_weights=list(REWARDS.values()), gradient_checkpointing=False,
        **algo.defaults,
        # ps_grpo trains on arithmetic_steps; the answer's correctness enters as one extra step.
        **({"outcome_weight": 1.0} if settings.algo == "ps_grpo" else {}),
        **(extra_args or {}),
    )
    trainer = build_trainer(
        settings.algo, model=model, processing_class=tokenizer, args=args,
        reward_funcs=[reward_fns.get(name) for name in REWARDS],
        train_dataset=to_prompt_dataset(train_rows, system_prompt=None, conversational=False),
        callbacks=list(callbacks),
    )
    trainer.train()
    return trainer


def plot_rewards(log_history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(row["step"], row["reward"]) for row in log_history if "reward" in row]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if points:
        ax.plot(*zip(*points), marker=".")
    ax.set_xlabel("training step")
    ax.set_ylabel("mean reward")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(settings: DemoSettings, report_json: str | None = None) -> dict:
    from transformers import set_seed

    from trl_plus.algorithms import get_algorithm

    get_algorithm(settings.algo)  # fail fast on a bad name
    start = time.perf_counter()
    set_seed(settings.seed)
    out = Path(settings.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_rows, dev_rows, test_rows = demo_problems(settings)

    t = time.perf_counter()
    if settings.warm_start == "shipped":
        from trl_plus.warm_start import load_warm_start, warm_start_info

        _log("1/4 the shipped SFT-warmed tiny model (warm_start='sft' runs the warm-up here)")
        model, tokenizer = load_warm_start()
        sft_steps = warm_start_info()["sft_steps"]
        _log(f"2/4 SFT warm-up: shipped ({sft_steps} steps, made by `python -m trl_plus.warm_start DIR`)")
    else:
        _log("1/4 tiny model")
        model_path = tiny_model_path(settings)
        _log("2/4 SFT warm-up on generated problems")
        model, tokenizer, sft_steps = sft_warmup(model_path, train_rows, dev_rows, settings)
    sft_seconds = time.perf_counter() - t
    before = greedy_accuracy(model, tokenizer, test_rows, settings.max_completion_length)
    _log(f"accuracy after SFT, before RL: {before:.1%} on {len(test_rows)} held-out problems")

    _log(f"3/4 RL with {settings.algo} for {settings.rl_steps} steps")
    t = time.perf_counter()
    trainer = rl_train(model, tokenizer, train_rows, settings)
    rl_seconds = time.perf_counter() - t
    _log("4/4 evaluation")
    after = greedy_accuracy(trainer.model, tokenizer, test_rows, settings.max_completion_length)
    _log(f"accuracy after RL: {after:.1%} ({(after - before) * 100:+.1f} points)")

    plot_path = out / "reward_curve.png"
    plot_rewards(trainer.state.log_history, plot_path, f"{settings.algo}: reward during RL")
    report = {
        "algo": settings.algo,
        "accuracy_before": before,
        "accuracy_after": after,
        "seconds": round(time.perf_counter() - start, 1),
        "steps": trainer.state.global_step,
        "warm_start": settings.warm_start,
        "sft_steps": sft_steps,
        "sft_seconds": round(sft_seconds, 1),  # loading time for the shipped warm start
        "rl_seconds": round(rl_seconds, 1),
        "reward_curve_png": str(plot_path),
        "settings": asdict(settings),
    }
    report_path = Path(report_json) if report_json else out / "report.json"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=2))
    _log(f"report: {report_path}; reward curve: {plot_path}; total {report['seconds']} s")
    return report
