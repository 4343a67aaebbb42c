"""How noisy is each estimator's policy gradient at an equal budget of generated completions? (issue 17: ReMax's claim)

    python benchmarks/gradient_variance.py --seed 0 --batches 30

From the SFT-warmed model of `benchmarks/learning.py` (the same start as its runs), each batch draws fresh prompts of
the demo's task, samples completions at temperature 1, scores them with the demo's reward, and takes the policy
gradient of GRPO's on-policy loss `-(1/B) sum_i A_i mean_t log pi(y_i,t)` for several advantage estimators, all from
`trl_plus.core`:

- `grpo`, `rloo`, `remax` on the *same* 8 prompts x 8 samples (ReMax also decodes one greedy completion per prompt:
  9 completions per prompt, as in `learning.py`);
- `remax_paper`: ReMax as its paper runs it, one sample plus one greedy completion per prompt, on 32 prompts
  (64 completions, the same budget as 8 x 8).

Adam makes the loss scale irrelevant, so the scale-free numbers are reported: the mean cosine similarity between the
gradients of independent batches (how much of a step is shared signal rather than noise) and the relative variance
`E||g - mean g||^2 / ||mean g||^2`; also the share of samples whose advantage is exactly 0 (no signal).
Writes `results/gradient_variance.{json,md}`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, md_table, pin_threads, reward_funcs_and_weights


def rewards_of(texts: list[str], rows: list[dict]) -> torch.Tensor:
    import torch

    from trl_plus.core import weighted_rewards

    funcs, weights = reward_funcs_and_weights()
    answers = [r["answer"] for r in rows]
    scores = [fn(prompts=[None] * len(texts), completions=texts, answer=answers) for fn in funcs]
    per_func = torch.tensor([[float("nan") if s is None else s for s in col] for col in zip(*scores)], dtype=torch.float64)
    return weighted_rewards(per_func, torch.tensor(weights, dtype=torch.float64))


def sample(model, tok, rows: list[dict], n: int, greedy: bool, max_new: int):
    """(completion ids (B, T), mask (B, T), prompt ids/mask, texts): `n` completions per row (prompts repeated)."""
    import torch

    from trl_plus.data import make_prompt

    prompts = [make_prompt(r["question"], None, False) for r in rows for _ in range(n)]
    enc = tok(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new, do_sample=not greedy, temperature=None if greedy else 1.0,
                             top_k=None if greedy else 0, top_p=None if greedy else 1.0, pad_token_id=tok.pad_token_id)
    comp = out[:, enc["input_ids"].shape[1]:]
    eos = (comp == tok.eos_token_id).int()
    # Valid up to and including the first EOS (TRL's completion mask).
    mask = (torch.cumsum(eos, 1) - eos == 0).long()
    texts = tok.batch_decode(comp, skip_special_tokens=True)
    return comp, mask, enc, texts


def policy_gradient(model, enc, comp, mask, advantages) -> torch.Tensor:
    """Flattened gradient of `-(1/B) sum_i A_i * mean_t log pi(y_i,t)` (TRL's 'grpo' loss at ratio 1)."""
    import torch

    ids = torch.cat([enc["input_ids"], comp], 1)
    attn = torch.cat([enc["attention_mask"], mask], 1)
    logits = model(input_ids=ids, attention_mask=attn).logits[:, enc["input_ids"].shape[1] - 1 : -1]
    logp = torch.log_softmax(logits.float(), -1).gather(-1, comp[..., None]).squeeze(-1)
    per_seq = (logp * mask).sum(1) / mask.sum(1).clamp(min=1)
    loss = -(advantages.to(per_seq.dtype) * per_seq).mean()
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params)
    return torch.cat([g.reshape(-1) for g in grads]).detach()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "trl-plus-bench"))
    args = p.parse_args()
    pin_threads(1)
    import torch
    from learning import MAX_COMPLETION, task_rows
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from trl_plus import core

    path = Path(args.cache) / f"sft-seed{args.seed}"
    if not (path / "sft.json").is_file():
        sys.exit(f"No SFT model at {path}: run benchmarks/learning.py --seeds {args.seed} first (it saves one).")
    set_seed(args.seed)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    model.eval()  # no dropout: the gradient's noise is the sampling's alone
    rows = task_rows("addition", 40 * args.batches, args.seed + 7)
    max_new = MAX_COMPLETION["addition"]
    grads = {k: [] for k in ("grpo", "rloo", "remax", "remax_paper")}
    zero = {k: [] for k in grads}
    start = time.perf_counter()
    for b in range(args.batches):
        group_rows, paper_rows = rows[40 * b : 40 * b + 8], rows[40 * b + 8 : 40 * b + 40]
        comp, mask, enc, texts = sample(model, tok, group_rows, 8, False, max_new)
        r = rewards_of(texts, [x for x in group_rows for _ in range(8)])
        ids = torch.arange(8).repeat_interleave(8)
        _, _, _, greedy_texts = sample(model, tok, group_rows, 1, True, max_new)
        r_greedy = rewards_of(greedy_texts, group_rows).repeat_interleave(8)
        one = torch.ones(len(r), 1)
        adv = {"grpo": core.grpo_advantages(r, ids), "rloo": core.rloo_advantages(r, ids),
               "remax": core.remax_advantages(r[:, None], r_greedy, one)[:, 0]}
        for k, a in adv.items():
            grads[k].append(policy_gradient(model, enc, comp, mask, a))
            zero[k].append(float((a == 0).double().mean()))
        pc, pm, penc, ptexts = sample(model, tok, paper_rows, 1, False, max_new)
        _, _, _, pgreedy = sample(model, tok, paper_rows, 1, True, max_new)
        pr, pg = rewards_of(ptexts, paper_rows), rewards_of(pgreedy, paper_rows)
        a = core.remax_advantages(pr[:, None], pg, torch.ones(len(pr), 1))[:, 0]
        grads["remax_paper"].append(policy_gradient(model, penc, pc, pm, a))
        zero["remax_paper"].append(float((a == 0).double().mean()))
        print(f"[gradient_variance] batch {b + 1}/{args.batches} ({time.perf_counter() - start:.0f} s)", flush=True)

    summary = {}
    for k, gs in grads.items():
        g = torch.stack(gs).double()
        mean = g.mean(0)
        unit = g / g.norm(dim=1, keepdim=True).clamp(min=1e-30)
        cos = unit @ unit.T
        n = len(gs)
        summary[k] = {
            "mean_pairwise_cosine": float((cos.sum() - cos.diagonal().sum()) / (n * (n - 1))),
            "relative_variance": float((g - mean).square().sum(1).mean() / mean.square().sum()),
            "zero_advantage_share": sum(zero[k]) / n,
            "completions_per_batch": 32 * 2 if k == "remax_paper" else 64 + (8 if k == "remax" else 0),
        }
    result = {"seed": args.seed, "batches": args.batches, "summary": summary,
              "seconds": round(time.perf_counter() - start), "machine": machine()}
    (RESULTS / "gradient_variance.json").write_text(json.dumps(result, indent=1))
    rows_md = [[k, s["completions_per_batch"], f"{s['mean_pairwise_cosine']:.3f}", f"{s['relative_variance']:.1f}",
                f"{s['zero_advantage_share']:.0%}"] for k, s in summary.items()]
    text = "\n".join([
        "# Gradient noise of each advantage estimator at an equal budget",
        "",
        f"SFT model of seed {args.seed}, {args.batches} independent batches of the demo's task, temperature 1.",
        "",
        md_table(["estimator", "completions / batch", "mean cosine between batches' gradients (higher: less noise)",
                  "relative variance E|g - mean|^2 / |mean|^2 (lower: less noise)", "samples with advantage 0"],
                 rows_md),
        "",
        ("grpo, rloo and remax score the same 8 prompts x 8 samples; remax also decodes one greedy completion per "
         "prompt. remax_paper is ReMax as its paper runs it: one sample and one greedy completion for each of 32 "
         "prompts."),
        "",
        f"Command: `python benchmarks/gradient_variance.py --seed {args.seed} --batches {args.batches}`",
    ])
    (RESULTS / "gradient_variance.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
