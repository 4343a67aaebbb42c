"""Listwise preference data: validation, ranking, tokenisation of K completions, a collator, and a builder.

A listwise row has `prompt`, `completions` (a list of K >= 2 responses, plain strings or conversational message
lists, as TRL accepts them) and either `ranking` (indices into `completions`, best first: a permutation of 0..K-1) or
`scores` (one number per completion, higher is better). K may differ between rows.

Ties rule for `scores`: completions with equal scores are tied, and a tie group shares one Plackett-Luce
denominator (Breslow's rule, see `trl_plus.plackett_luce`): the loss pulls tied scores together and never prefers
one tied completion over another. Inside a tie group the original order is kept (it does not affect the loss).

Tokenisation reuses TRL's own `_prepare_dataset` of the trainer at hand: each row is split into K pair rows
(`chosen` = one completion), tokenised exactly as TRL tokenises a chosen response (EOS, chat template, tools), and
regrouped. The collator flattens a batch of B rows into the N = sum_b K_b real sequences, in row-major order.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from datasets import Dataset, IterableDataset

PASSTHROUGH = ("tools", "chat_template_kwargs")  # per-row columns TRL's tokenisation reads

@dataclass
class ListwiseOptions:
    """The fields both listwise configs add to TRL's (mixed in before `DPOConfig` / `RewardConfig`)."""

    top_k: int | None = field(
        default=None,
        metadata={"help": "Use only the first top_k factors of the Plackett-Luce product (a truncated ranking: "
                          "only the best top_k positions are trusted). None: the whole ranking. Every row needs "
                          "K >= top_k."},
    )

    def check_listwise_options(self) -> None:
        """Machine defaults (`bf16` off where it cannot run) and the `top_k` check; call before TRL's checks."""
        from trl_plus.engine.machine import machine_defaults

        machine_defaults(self)
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 (or None for the whole ranking), got {self.top_k}.")



class ListwiseDataError(ValueError):
    """A listwise row is malformed; the message names the row and the fix."""


def _is_empty(completion) -> bool:
    if isinstance(completion, str):
        return not completion.strip()
    if isinstance(completion, list):  # conversational: a list of messages
        return not any(str(m.get("content") or "").strip() for m in completion if isinstance(m, dict))
    return completion is None


def rank_row(row: dict, index: int, top_k: int | None = None) -> tuple[list, list[int]]:
    """Validate one listwise row; return its completions best first and their tie levels (equal = tied).

    Raises ListwiseDataError naming row `index` for: no/both of `ranking` and `scores`, K < 2, an empty
    completion, a ranking that is not a permutation of 0..K-1, a score count != K, a NaN or infinite score, and
    `top_k` larger than K.
    """
    where = f"row {index}"
    completions = row.get("completions")
    if not isinstance(completions, (list, tuple)):
        raise ListwiseDataError(f"{where}: 'completions' must be a list of K >= 2 responses, got "
                                f"{type(completions).__name__}.")
    k = len(completions)
    if k < 2:
        raise ListwiseDataError(f"{where}: has K={k} completion(s); a ranking needs K >= 2. Drop the row or add "
                                "completions.")
    for j, c in enumerate(completions):
        if _is_empty(c):
            raise ListwiseDataError(f"{where}: completion {j} is empty; remove it (and its rank or score) or fill it.")
    ranking, scores = row.get("ranking"), row.get("scores")
    if (ranking is None) == (scores is None):
        raise ListwiseDataError(f"{where}: give exactly one of 'ranking' (indices, best first) or 'scores' (higher "
                                "is better).")
    if top_k is not None and top_k > k:
        raise ListwiseDataError(f"{where}: top_k={top_k} is larger than its K={k} completions; lower top_k or drop "
                                "rows with fewer completions.")
    if ranking is not None:
        is_index = [isinstance(i, int) and not isinstance(i, bool) for i in ranking]
        if not all(is_index) or sorted(ranking) != list(range(k)):
            raise ListwiseDataError(f"{where}: ranking {list(ranking)} is not a permutation of 0..{k - 1} (one index "
                                    f"per completion, best first).")
        return [completions[i] for i in ranking], list(range(k))
    if len(scores) != k:
        raise ListwiseDataError(f"{where}: {len(scores)} scores for {k} completions; give one score per completion.")
    if not all(isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) for s in scores):
        raise ListwiseDataError(f"{where}: scores {list(scores)} contain NaN, None, infinity or a non-number; "
                                "give finite numbers.")
    order = sorted(range(k), key=lambda j: -float(scores[j]))  # stable: ties keep their original order
    distinct = sorted({float(s) for s in scores}, reverse=True)
    return [completions[j] for j in order], [distinct.index(float(scores[j])) for j in order]


def tokenize_listwise(dataset: Dataset, prepare_pairs: Callable[[Dataset], Dataset], top_k: int | None,
                      keep: Sequence[str] = ("chosen_ids",)) -> Dataset:
    """Rank, split into pair rows, tokenise with `prepare_pairs` (a TRL trainer's `_prepare_dataset`), regroup.

    Returns rows with `completion_ids` (K token lists, best first; from TRL's `chosen_ids`), `levels`, and
    `prompt_ids` when TRL's tokenisation produced it. Completions TRL drops (e.g. the reward trainer's
    `max_length` filter) leave the rest of the ranking (a Plackett-Luce ranking restricted to a subset is again
    Plackett-Luce); rows left with fewer than max(2, top_k) completions are dropped with a warning.
    """
    if isinstance(dataset, IterableDataset):
        raise ListwiseDataError("listwise trainers need a map-style datasets.Dataset (not an IterableDataset); "
                                "load it without streaming=True.")
    columns = set(dataset.column_names)
    if "completion_ids" in columns and "levels" in columns:
        return dataset  # already prepared (e.g. `evaluate` on a prepared split)
    missing = {"prompt", "completions"} - columns
    if missing:
        raise ListwiseDataError(f"listwise dataset is missing column(s) {sorted(missing)}; expected 'prompt', "
                                "'completions' and 'ranking' or 'scores'.")
    pairs, levels = [], []
    for i, row in enumerate(dataset):
        ranked, lv = rank_row(row, i, top_k)
        levels.append(lv)
        extra = {c: row[c] for c in PASSTHROUGH if c in row}
        pairs += [{"prompt": row["prompt"], "chosen": c, "rejected": c, "_row": i, "_pos": p, **extra}
                  for p, c in enumerate(ranked)]
    tokenized = prepare_pairs(Dataset.from_list(pairs))
    grouped: dict[int, dict[str, Any]] = {}
    for r in tokenized:
        g = grouped.setdefault(r["_row"], {"completion_ids": [], "levels": []})
        if "prompt_ids" in r:
            g["prompt_ids"] = r["prompt_ids"]
        g["completion_ids"].append(r["chosen_ids"])
        g["levels"].append(levels[r["_row"]][r["_pos"]])
    need = max(2, top_k or 2)
    rows = [g for _, g in sorted(grouped.items()) if len(g["completion_ids"]) >= need]
    if len(rows) < len(dataset):
        warnings.warn(f"{len(dataset) - len(rows)} of {len(dataset)} listwise rows were dropped: fewer than {need} "
                      "completions fit max_length. Raise max_length to keep them.", stacklevel=2)
    if not rows:
        raise ListwiseDataError("no listwise row is left after tokenisation; raise max_length.")
    return Dataset.from_list(rows)


@dataclass
class ListwiseCollator:
    """Flatten B listwise rows into N = sum_b K_b right-padded sequences (row-major, best first in each row).

    Returns `input_ids`, `attention_mask` (N, T); `completion_mask` (N, T) when rows have `prompt_ids` (DPO: 1 on
    completion tokens); `list_mask` (B, K_max) bool, true for real completions; `levels` (B, K_max) tie levels.
    With `max_length`, each sequence keeps its first `max_length` tokens, as TRL's DPO collator does.
    """

    pad_token_id: int | None = None
    max_length: int | None = None
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        from trl.trainer.utils import pad

        ids, completion = [], []
        for ex in examples:
            prompt = list(ex.get("prompt_ids") or [])
            for c in ex["completion_ids"]:
                ids.append((prompt + list(c))[: self.max_length])
                completion.append(([0] * len(prompt) + [1] * len(c))[: self.max_length])
        k_max = max(len(ex["completion_ids"]) for ex in examples)
        sizes = torch.tensor([len(ex["completion_ids"]) for ex in examples])
        list_mask = torch.arange(k_max) < sizes.unsqueeze(1)
        levels = torch.zeros(len(examples), k_max, dtype=torch.long)
        levels[list_mask] = torch.tensor([lv for ex in examples for lv in ex["levels"]], dtype=torch.long)

        def padded(seqs, value):
            return pad([torch.tensor(s, dtype=torch.long) for s in seqs], padding_value=value, padding_side="right",
                       pad_to_multiple_of=self.pad_to_multiple_of)

        out = {"input_ids": padded(ids, self.pad_token_id), "attention_mask": padded([[1] * len(s) for s in ids], 0),
               "list_mask": list_mask, "levels": levels}
        if "prompt_ids" in examples[0]:
            out["completion_mask"] = padded(completion, 0)
        return out


class ListwiseDataMixin:
    """The data seams both listwise trainers share; put it before the TRL trainer in the bases.

    `_prepare_dataset` tokenises with the TRL trainer's own `_prepare_dataset` (see `tokenize_listwise`), and
    `_use_listwise_collator` replaces the pair collator TRL builds when the user passed none.
    """

    listwise_columns: tuple[str, ...] = ("completion_ids", "levels")

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        prepare = super()._prepare_dataset
        return tokenize_listwise(dataset, lambda pairs: prepare(pairs, processing_class, args, dataset_name),
                                 args.top_k)

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = list(self.listwise_columns)

    def _use_listwise_collator(self, pad_token_id: int, max_length: int | None = None) -> None:
        self.data_collator = ListwiseCollator(pad_token_id=pad_token_id, max_length=max_length,
                                              pad_to_multiple_of=self.args.pad_to_multiple_of)


def to_lists(flat: torch.Tensor, list_mask: torch.Tensor) -> torch.Tensor:
    """Scatter per-sequence values `(N,)` back to `(B, K_max)` rows (zeros at padding), undoing the collator."""
    return flat.new_zeros(list_mask.shape).masked_scatter(list_mask.to(flat.device), flat)


def build_listwise_dataset(policy, prompts, reward_funcs, k: int = 4, *, tokenizer=None,
                           reward_weights: Sequence[float] | None = None, max_new_tokens: int = 32,
                           temperature: float = 1.0, batch_size: int = 16, drop_all_tied: bool = False) -> Dataset:
    """Sample `k` completions per prompt from `policy`, score them with `reward_funcs`, and return a listwise
    dataset (`prompt`, `completions`, `scores`, plus the prompts' other columns) ready for the listwise trainers.

    Args:
        policy: a causal LM (with `tokenizer`; sampled with `generate(do_sample=True)`) or any callable
            `policy(prompts: list, k: int) -> list[list[str]]` returning k completions per prompt.
        prompts: a `datasets.Dataset` or list of dicts with a `prompt` column (plain text or conversational);
            the other columns (e.g. `answer`) are passed to the reward functions, as TRL's GRPOTrainer does.
        reward_funcs: reward functions `f(prompts, completions, **columns) -> list[float | None]` or names from
            the `reward_fns` registry; their weighted sum (`reward_weights`, default 1 each) is the score, a
            None counting as 0.
        drop_all_tied: drop prompts whose k completions all score the same (they carry no preference).

    Empty samples are left out of their list, and prompts left with fewer than 2 completions are dropped, so K
    can vary per row.
    """
    import reward_fns

    rows = list(prompts)
    funcs = reward_funcs if isinstance(reward_funcs, (list, tuple)) else [reward_funcs]
    funcs = [reward_fns.get(f) if isinstance(f, str) else f for f in funcs]
    weights = list(reward_weights) if reward_weights is not None else [1.0] * len(funcs)
    if len(weights) != len(funcs):
        raise ValueError(f"{len(weights)} reward_weights for {len(funcs)} reward functions; give one weight each.")
    sample = policy if callable(policy) and not hasattr(policy, "generate") else _sampler(policy, tokenizer,
                                                                                          max_new_tokens, temperature)
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        completions = sample([r["prompt"] for r in chunk], k)
        flat_rows = [r for r in chunk for _ in range(k)]
        flat = [c for cs in completions for c in cs]
        columns = {key: [r[key] for r in flat_rows] for key in flat_rows[0] if key != "prompt"}
        total = [0.0] * len(flat)
        for f, w in zip(funcs, weights):
            values = f(prompts=[r["prompt"] for r in flat_rows], completions=flat, **columns)
            total = [t + w * (v or 0.0) for t, v in zip(total, values)]
        for i, row in enumerate(chunk):
            # an empty sample (immediate EOS) is not a valid listwise completion: leave it out of the list
            kept = [(c, s) for c, s in zip(completions[i], total[i * k : (i + 1) * k]) if not _is_empty(c)]
            if len(kept) < 2 or (drop_all_tied and len({s for _, s in kept}) == 1):
                continue
            out.append({**row, "completions": [c for c, _ in kept], "scores": [s for _, s in kept]})
    return Dataset.from_list(out)


def _sampler(model, tokenizer, max_new_tokens: int, temperature: float):
    if tokenizer is None:
        raise ValueError("build_listwise_dataset needs `tokenizer` when `policy` is a model.")

    @torch.no_grad()
    def sample(prompts: list, k: int) -> list[list]:
        conversational = isinstance(prompts[0], list)
        texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) if conversational
                 else p for p in prompts]
        side, tokenizer.padding_side = tokenizer.padding_side, "left"
        was_training = model.training
        model.eval()
        try:
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not conversational)
            enc = {key: v.to(model.device) for key, v in enc.items()}
            gen = model.generate(**enc, do_sample=True, temperature=temperature, max_new_tokens=max_new_tokens,
                                 num_return_sequences=k, pad_token_id=tokenizer.pad_token_id)
        finally:
            tokenizer.padding_side = side
            model.train(was_training)
        decoded = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        if conversational:
            decoded = [[{"role": "assistant", "content": t}] for t in decoded]
        return [decoded[i * k : (i + 1) * k] for i in range(len(prompts))]

    return sample
