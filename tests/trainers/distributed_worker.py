"""Every trl-plus trainer under 2 processes, in one launch (run by `tests/trainers/test_distributed.py`):

    accelerate launch --multi_gpu --num_processes 2 --main_process_port PORT \\
        tests/trainers/distributed_worker.py OUTDIR MODEL_DIR

Without a GPU, `use_cpu=True` makes accelerate start a gloo process group on CPU (MULTI_CPU). Each run trains
2 steps on the tiny model with pinned completions and a deterministic reward and records, per call of
`_compute_loss`, the advantages, prompt/completion ids and masks this process handed to the loss. Each rank writes
`OUTDIR/rank{R}.pt` after every run (so a crash still leaves what was done) and `OUTDIR/rank{R}.done` at the end.

Not collected by pytest (no `test_` prefix). The test imports this module for `RUNS`, `make_trainer` and
`record`, so the single-process reference is built by the very same code.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch

G = 4
SEED = 0
N_PROMPTS = 16
# Pinned "generations": the k-th copy of a prompt in one generation call gets TEXTS[k % 4]. Keying on the
# prompt (not on the row index) makes every prompt get the same completions however the rows are split over
# processes, and ReMax's greedy pass (one row per prompt) gets TEXTS[0].
TEXTS = ["7", "77", "a", "777"]  # '7' counts 1, 2, 0, 3: every group has a spread


def gold(answer: str) -> int:
    return int(answer.rsplit("####", 1)[-1])


def scaled_sevens(completions, answer, **kwargs):
    """Deterministic, prompt-dependent reward with a spread in every group: sevens * (gold % 5 + 1)."""
    return [c.count("7") * (gold(a) % 5 + 1.0) for c, a in zip(completions, answer)]


def even_sevens(completions, answer, **kwargs):
    """Varies only for prompts with an even answer: odd-answer groups are zero-variance (DAPO drops them)."""
    return [c.count("7") * (gold(a) % 5 + 1.0) if gold(a) % 2 == 0 else 0.0 for c, a in zip(completions, answer)]


def constant(completions, **kwargs):
    return [1.0] * len(completions)


def seven_steps(completions, answer, **kwargs):
    """Process reward: every character is a step, worth (gold % 3 + 1) if it is a '7', else -0.5."""
    return [[(i, (gold(a) % 3 + 1.0) if ch == "7" else -0.5) for i, ch in enumerate(c)]
            for c, a in zip(completions, answer)]


# name -> (algorithm, config overrides, reward, process reward, compared with the single-process run)
RUNS = {
    "dr_grpo": ("dr_grpo", {}, scaled_sevens, None, True),
    "dapo": ("dapo", {}, scaled_sevens, None, True),  # every first-round group survives: exact
    "dapo_drop": ("dapo", {}, even_sevens, None, False),  # rank 1's first group is dropped, rank 0's kept
    "dapo_flat": ("dapo", {"max_num_gen_batches": 2}, constant, None, False),  # always flat: hits the cap
    "reinforce_pp": ("reinforce_pp", {}, scaled_sevens, None, True),  # kl_coef=0.01: reference model in use
    "reinforce_pp_baseline": ("reinforce_pp_baseline", {}, scaled_sevens, None, True),
    "remax": ("remax", {}, scaled_sevens, None, True),
    "rahf": ("rahf", {}, scaled_sevens, None, True),
    "ps_grpo": ("ps_grpo", {}, None, seven_steps, True),
    # engine combinations (`trl-plus train grpo --advantage_estimator ...`)
    "rpp_baseline_ds_kl": ("grpo", {"advantage_estimator": "reinforce_pp_baseline", "dynamic_sampling": True,
                                    "kl_in_reward_coef": 0.01}, scaled_sevens, None, True),
    "rloo_kl_k2_loss": ("grpo", {"advantage_estimator": "rloo", "kl_in_reward_coef": 0.01, "beta": 0.01,
                                 "kl_in_loss_estimator": "k2"}, scaled_sevens, None, True),
    "remax_ds": ("grpo", {"advantage_estimator": "remax", "dynamic_sampling": True}, scaled_sevens, None, True),
    # The critic's gradients are averaged over the ranks, whose equal token counts make that the global mean.
    "ppo": ("ppo", {}, scaled_sevens, None, True),  # kl_coef=0.01: reference model in use
}


def dataset(first_even_then_odd: bool = False):
    """16 distinct `What is a+b?` prompts (all the same length). With `first_even_then_odd`, rows are placed so
    that TRL's sampler (seeded RepeatSampler) hands the first generation batch an even-answer prompt (rank 0's
    group) then an odd-answer one (rank 1's)."""
    from trl_plus.data import generate_problems, to_prompt_dataset

    rows, seen = [], set()
    for r in generate_problems(200, seed=SEED):
        if r["question"] not in seen:
            seen.add(r["question"])
            rows.append(r)
    rows = rows[:N_PROMPTS]
    if first_even_then_odd:
        order = torch.randperm(N_PROMPTS, generator=torch.Generator().manual_seed(SEED)).tolist()
        even = next(r for r in rows if gold(r["answer"]) % 2 == 0)
        odd = next(r for r in rows if gold(r["answer"]) % 2 == 1)
        rest = [r for r in rows if r is not even and r is not odd]
        placed = [None] * N_PROMPTS
        placed[order[0]], placed[order[1]] = even, odd
        for i in range(N_PROMPTS):
            if placed[i] is None:
                placed[i] = rest.pop(0)
        rows = placed
    return to_prompt_dataset(rows, system_prompt=None, conversational=False)


def config_kwargs(output_dir: str, per_device: int) -> dict:
    return {"output_dir": output_dir, "use_cpu": True, "bf16": False, "max_steps": 2,
            "per_device_train_batch_size": per_device, "num_generations": G, "max_completion_length": 8,
            "learning_rate": 1e-2, "logging_steps": 1, "save_strategy": "no", "report_to": [], "seed": SEED,
            "disable_tqdm": True, "gradient_checkpointing": False}


def make_trainer(name: str, model_dir: str, output_dir: str, per_device: int):
    """The trainer of run `name`; raises ImportError when the algorithm's module is missing."""
    from trl_plus.algorithms import build_trainer, get_algorithm

    algo, overrides, reward, process, _ = RUNS[name]
    spec = get_algorithm(algo)
    config_cls, _ = spec.classes()
    args = config_cls(**config_kwargs(output_dir, per_device), **spec.defaults, **overrides)
    kwargs = {"process_reward_funcs": [process]} if process is not None else {}
    trainer = build_trainer(algo, model=model_dir, reward_funcs=[] if reward is None else reward, args=args,
                            train_dataset=dataset(first_even_then_odd=name == "dapo_drop"), **kwargs)
    pin(trainer)
    return trainer


def pin(trainer) -> None:
    tok = trainer.processing_class
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in TEXTS]

    def fake(prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        copies, out = {}, []
        for p in prompt_ids:
            k = copies.get(tuple(p), 0)
            copies[tuple(p)] = k + 1
            out.append(ids[k % len(ids)])
        return out, None

    trainer._generate_single_turn = fake


def record(trainer) -> list[dict]:
    """Wrap `_compute_loss`: every call appends what the loss was handed (CPU copies)."""
    calls, loss = [], trainer._compute_loss

    def wrapped(model, inputs):
        calls.append({k: inputs[k].detach().cpu().clone() for k in
                      ("advantages", "prompt_ids", "prompt_mask", "completion_ids", "completion_mask")})
        return loss(model, inputs)

    trainer._compute_loss = wrapped
    return calls


def train(name: str, model_dir: str, output_dir: str, per_device: int) -> dict:
    """Train run `name` for 2 steps; -> {"calls", "log", "seconds"}."""
    start = time.perf_counter()
    trainer = make_trainer(name, model_dir, output_dir, per_device)
    calls = record(trainer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the flat run warns at the cap, by design
        trainer.train()
    return {"calls": calls, "log": trainer.state.log_history, "seconds": time.perf_counter() - start}


def main(outdir: str, model_dir: str, names: list[str]) -> None:
    from accelerate import PartialState

    state = PartialState(cpu=True)
    rank, world = state.process_index, state.num_processes
    out = Path(outdir)
    result = {"rank": rank, "world": world, "distributed_type": str(state.distributed_type),
              "backend": getattr(state, "backend", None), "runs": {}}
    for name in names:
        try:
            result["runs"][name] = train(name, model_dir, str(out / "runs" / name), per_device=G)
        except Exception:
            result["runs"][name] = {"error": traceback.format_exc()}
            torch.save(result, out / f"rank{rank}.pt")
            raise  # the launcher then stops the other rank instead of leaving it waiting in a collective
        torch.save(result, out / f"rank{rank}.pt")
        print(f"[rank {rank}] {name}: {result['runs'][name]['seconds']}", flush=True)
    (out / f"rank{rank}.done").write_text("ok")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(1)
    main(sys.argv[1], sys.argv[2], sys.argv[3].split(",") if len(sys.argv) > 3 else list(RUNS))
