"""Dynamic sampling (DAPO, Yu et al. 2025, https://huggingface.co/papers/2503.14476), for every estimator.

Groups whose filter metric has zero spread carry no group-relative signal; they are dropped and *new prompts* are
drawn from the training set, generated and scored, up to `max_num_gen_batches` rounds. TRL has no hook for
re-sampling, so each round is one call of TRL's `_generate_and_score_completions`; the kept rows of the rollout
dicts and of what TRL scored (`Scored`) are joined, and the engine then computes the advantages once, on the
assembled batch (so batch statistics such as REINFORCE++'s whitening see exactly the trained rows).

Multi-process rule: every group lives on one process (the per-process generation batch is a multiple of G), each
process keeps the *first* K surviving groups of its own rows in round order (K = its original number of groups),
and all processes run the same number of rounds, continuing while any of them is short (all-reduce), so no rank
waits and every rank ends with K groups. At the cap, missing slots are filled with dropped groups whose loss mask
is zeroed (and whose advantages are set to 0). The prompt-drawing RNG is seeded with `seed + process_index` and is
saved with every checkpoint.
"""

from __future__ import annotations

import warnings

import torch
from datasets import IterableDataset

from trl_plus.engine.rollout_batches import concat_rollouts, select_rows


class DynamicSampling:
    """Mixin of `PlusGRPOTrainer`: `sample_dynamically(inputs)` replaces one TRL rollout by several rounds."""

    def setup_dynamic_sampling(self) -> None:
        from trl_plus.engine.config import setting

        args = self.args
        metric = setting(args, "dynamic_sampling_metric")
        if metric is not None and metric not in self.reward_func_names:
            raise ValueError(f"dynamic_sampling_metric={metric!r} is not one of the reward functions "
                             f"{self.reward_func_names}: name one of them, or None for the total reward.")
        self._metric_index = None if metric is None else self.reward_func_names.index(metric)
        if setting(args, "dynamic_sampling") and isinstance(self.train_dataset, IterableDataset):
            raise ValueError("dynamic_sampling draws new prompts by index, which an IterableDataset cannot do: "
                             "pass a map-style datasets.Dataset, or set dynamic_sampling=False.")
        self._ds_generator = torch.Generator().manual_seed(args.seed + self.accelerator.process_index)

    def sample_dynamically(self, inputs: list[dict]) -> dict:
        """Rounds of generation until every process holds as many groups with signal as it was given."""
        G, n = self.num_generations, len(inputs)
        need = n // G  # groups this process must hand back (TRL splits n rows into steps_per_generation batches)
        kept, spare, rounds, batch, cap = [], [], 0, inputs, self.args.max_num_gen_batches
        while True:
            out = self._rollout(batch)
            rounds += 1
            for g, has_spread in enumerate(self._groups_with_spread(n).tolist()):
                rows = slice(g * G, (g + 1) * G)
                part = (select_rows(out, rows), self._scored.select(rows))
                if has_spread and len(kept) < need:
                    kept.append(part)
                elif not has_spread and len(spare) < need:
                    spare.append(part)
            # Every rank runs the same rounds (each round gathers across processes): go on while any rank is short.
            short_ranks = self.reduce_sum(torch.tensor(float(len(kept) < need), device=self.accelerator.device))
            if short_ranks.item() == 0 or (cap and rounds >= cap):
                break
            batch = self._draw_prompts(need, inputs[0].keys())
        fill = spare[: need - len(kept)]
        for part, _ in fill:  # a dropped group in a missing slot contributes nothing to the loss
            part["completion_mask"] = torch.zeros_like(part["completion_mask"])
        counts = torch.tensor([len(kept), len(fill)], device=self.accelerator.device, dtype=torch.float32)
        n_kept, n_filled = (int(c) for c in self.reduce_sum(counts).tolist())
        if n_filled:
            self._at_cap(n_kept, need * self.accelerator.num_processes, rounds)
        parts = kept + fill
        result = concat_rollouts([p for p, _ in parts], self._tokenizer.pad_token_id)
        result["num_items_in_batch"] = self.reduce_sum(self.loss_mask(result).sum())
        self._scored = type(self._scored).join([s for _, s in parts], self.accelerator.gather,
                                               self.accelerator.process_index)
        self.log_metric("dapo/gen_rounds", rounds)
        self.log_metric("dapo/groups_generated", rounds * need * self.accelerator.num_processes)
        self.log_metric("dapo/groups_kept", n_kept)
        self.log_metric("dapo/groups_filled", n_filled)
        return result

    def _groups_with_spread(self, n_local: int) -> torch.Tensor:
        """(n_local / G,) bool: whether each local group's filter metric has a non-zero spread (NaN-aware; a group
        with fewer than two scored members has none)."""
        rpf = self._scored.rewards_per_func
        if self._metric_index is not None:
            values = rpf[:, self._metric_index]
        else:
            values = self.total_rewards(rpf, self.signal_weights)
        v = values[self.local_rows(n_local)].view(-1, self.num_generations)
        valid = ~torch.isnan(v)
        return torch.where(valid, v, -torch.inf).amax(dim=1) > torch.where(valid, v, torch.inf).amin(dim=1)

    def _draw_prompts(self, num_prompts: int, keys) -> list[dict]:
        """`num_prompts` new training rows from the trainer's own RNG, each repeated G times side by side."""
        ds, g = self.train_dataset, self._ds_generator
        # Without replacement within a round; a prompt may come back in a later round or step (as with replacement).
        idx = (torch.randperm(len(ds), generator=g)[:num_prompts] if num_prompts <= len(ds)
               else torch.randint(len(ds), (num_prompts,), generator=g))
        rows = [ds[int(i)] for i in idx]
        if self.args.remove_unused_columns:  # match the columns the dataloader hands over
            rows = [{k: r[k] for k in keys if k in r} for r in rows]
        return [dict(r) for r in rows for _ in range(self.num_generations)]

    def _at_cap(self, n_kept: int, n_needed: int, rounds: int) -> None:
        metric = self.args.dynamic_sampling_metric or "the total reward"
        message = (f"DAPO dynamic sampling hit max_num_gen_batches={rounds}: only {n_kept} of the {n_needed} groups "
                   f"needed have a non-zero spread in {metric}. ")
        if self.args.dynamic_sampling_strict:
            raise RuntimeError(message + "Raise max_num_gen_batches (0 = no limit), use a reward that tells the "
                               "completions of a prompt apart, or set dynamic_sampling_strict=False to train on "
                               "what survived.")
        if self.accelerator.is_main_process:
            warnings.warn(message + f"Training on them; the other {n_needed - n_kept} slots hold dropped groups with "
                          "zero loss mask and advantage. Raise max_num_gen_batches to avoid this.", stacklevel=3)

    def dynamic_sampling_state(self) -> dict:
        """The state of this process's prompt-drawing RNG."""
        return {"generator": self._ds_generator.get_state()}

    def load_dynamic_sampling_state(self, state: dict) -> None:
        self._ds_generator.set_state(state["generator"])
