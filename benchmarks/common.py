"""Helpers shared by the trl-plus benchmarks: thread pinning, machine description, trainer construction at the
demo's settings, a completion counter around generation, and a manual step runner for interleaved timing."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The benchmark variants: label -> (registry algorithm, extra config values).
def claim_free_lines_score_0() -> dict:
    """Trainer arguments of the runs made before 2 December: `arithmetic_steps` scoring claim-free lines 0."""
    from reward_fns import make_arithmetic_steps

    return {"process_reward_funcs": [make_arithmetic_steps(neutral=0.0)]}


VARIANTS = {
    "grpo": ("grpo", {}),  # the baseline: the engine's grpo preset keeps TRL's own GRPO advantages and loss
    "dr_grpo": ("dr_grpo", {}),
    "dapo": ("dapo", {"dynamic_sampling": False}),
    "dapo_ds": ("dapo", {"dynamic_sampling": True}),
    "reinforce_pp": ("reinforce_pp", {}),
    "reinforce_pp_baseline": ("reinforce_pp_baseline", {}),
    "remax": ("remax", {}),
    "rahf": ("rahf", {}),
    # The demo's setting: the outcome (correctness + format) as a last step. With the default outcome_weight=0 the
    # outcome rewards are only logged, and nothing trains the answer block (issue 17's ProcessGRPO loss and collapse).
    "ps_grpo": ("ps_grpo", {"outcome_weight": 1.0}),  # text steps and outcome normalised apart (the default)
    # Before the fixes (root_causes.md section 3): every step pooled in one normalisation (the seed-1 collapse), and
    # per kind but with claim-free lines scored 0 (the policy cut its claims on hard prompts at the full budget).
    "ps_grpo_pooled": ("ps_grpo", {"outcome_weight": 1.0, "process_normalisation": "pooled"}, claim_free_lines_score_0),
    "ps_grpo_neutral0": ("ps_grpo", {"outcome_weight": 1.0}, claim_free_lines_score_0),
    "ppo": ("ppo", {}),  # PPO: learned critic (a copy of the policy + value head), GAE, k1 KL in the reward
}


def pin_threads(n: int = 1) -> None:
    """One thread per process: on a shared, loaded machine this makes step times far steadier."""
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    os.environ.setdefault("MKL_NUM_THREADS", str(n))
    import torch

    torch.set_num_threads(n)


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def machine() -> dict:
    """nproc, memory, CPU model and the load average now."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    import torch
    import transformers
    import trl

    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": mem_gib,
        "load_average_1_5_15": [round(x, 2) for x in load_average()],
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
    }


def reward_funcs_and_weights():
    """The demo's reward: 1.0 for the right number, 0.1 for the format (`trl_plus.demo.REWARDS`)."""
    import reward_fns
    from trl_plus.demo import REWARDS

    return [reward_fns.get(name) for name in REWARDS], list(REWARDS.values())


def make_trainer(label: str, model, tokenizer, train_dataset, out_dir: str, seed: int = 0, *,
                 prompts_per_step: int = 8, num_generations: int = 8, max_completion_length: int = 28,
                 lr: float = 1e-4, max_steps: int = 100, reward_funcs=None, reward_weights=None, **overrides):
    """A trainer of variant `label` at the demo's RL settings (`trl_plus.demo.rl_train`), plus `overrides`."""
    from trl_plus.algorithms import build_trainer, get_algorithm

    name, extra, *trainer_kwargs = VARIANTS[label]  # a third item: a function giving more trainer arguments
    algo = get_algorithm(name)
    config_cls, _ = algo.classes()
    if reward_funcs is None:
        reward_funcs, reward_weights = reward_funcs_and_weights()
    values = {
        "output_dir": out_dir, "use_cpu": True, "bf16": False, "seed": seed,
        "per_device_train_batch_size": prompts_per_step * num_generations, "num_generations": num_generations,
        "max_completion_length": max_completion_length, "learning_rate": lr, "max_steps": max_steps, "logging_steps": 1,
        "save_strategy": "no", "report_to": [], "temperature": 1.0, "reward_weights": reward_weights,
        "disable_tqdm": True,
    }
    values.update(algo.defaults)
    values.update(extra)
    values.update(overrides)
    args = config_cls(**values)
    return build_trainer(name, model=model, processing_class=tokenizer, args=args, reward_funcs=reward_funcs,
                         train_dataset=train_dataset, **(trainer_kwargs[0]() if trainer_kwargs else {}))


class GenerationMeter:
    """Wraps a trainer's `_generate` (TRL's single entry to generation, also used by DAPO's extra rounds and
    ReMax's greedy rollout) to count generated completions and the seconds spent generating."""

    def __init__(self, trainer):
        self.completions = 0
        self.calls = 0
        self.seconds = 0.0
        inner = trainer._generate

        def counted(prompts):
            start = time.perf_counter()
            result = inner(prompts)
            self.seconds += time.perf_counter() - start
            self.completions += len(prompts)
            self.calls += 1
            return result

        trainer._generate = counted


class StepRunner:
    """Runs single optimisation steps of a trainer by hand (generation + scoring + loss + backward + optimiser
    step), so several trainers can be timed interleaved in one process without `train()`'s setup cost."""

    def __init__(self, trainer):
        self.trainer = trainer
        trainer.create_optimizer_and_scheduler(num_training_steps=trainer.args.max_steps)
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps  # set by train()
        self.loader = trainer.get_train_dataloader()
        self.batches = iter(self.loader)

    def step(self) -> float:
        """One step; returns its wall seconds (`self.last_cpu` holds its process CPU seconds)."""
        t = self.trainer
        try:
            batch = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            batch = next(self.batches)
        start, start_cpu = time.perf_counter(), time.process_time()
        t.training_step(t.model, batch, None)
        t.optimizer.step()
        t.control = t.callback_handler.on_optimizer_step(t.args, t.state, t.control)  # as train(): PPO's critic steps
        t.lr_scheduler.step()
        t.model.zero_grad(set_to_none=True)
        t.state.global_step += 1
        self.last_metrics = {k: list(v) for k, v in t._metrics["train"].items()}
        t._metrics["train"].clear()
        self.last_cpu = time.process_time() - start_cpu
        return time.perf_counter() - start


def median(xs) -> float:
    return statistics.median(xs)


def md_table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def write_results(text: str, result: dict, json_path: str | None, md_path: str | None) -> None:
    """Print the markdown report and write it and the JSON result where asked."""
    import json
    from pathlib import Path

    print(text)
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=1))
    if md_path:
        Path(md_path).write_text(text + "\n")
