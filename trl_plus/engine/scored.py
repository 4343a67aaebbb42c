"""`Scored`: what TRL scored for one generation batch, kept for the estimators (and joined across rollout rounds)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Scored:
    """What TRL scored for the current generation batch (set by `_calculate_rewards`)."""

    inputs: list[dict[str, Any]]  # this process's B rows
    prompts: list
    completions: list
    completion_ids: list[list[int]]
    rewards_per_func: torch.Tensor  # (N, n_funcs) of every process, NaN where a function abstained
    steps: list | None = None  # per process reward function: this process's B lists of (offset, reward)
    local: slice | None = None  # this process's rows of `rewards_per_func`

    def select(self, rows: slice) -> Scored:
        """Some of this process's rows (`rows` indexes its B rows); `rewards_per_func` keeps only those rows."""
        return Scored(self.inputs[rows], self.prompts[rows], self.completions[rows], self.completion_ids[rows],
                      self.rewards_per_func[self.local][rows], None if self.steps is None else
                      [s[rows] for s in self.steps])

    @staticmethod
    def join(parts: list[Scored], gather, rank: int) -> Scored:
        """Concatenate parts of this process (from `select`) and gather `rewards_per_func` over the processes
        again, so the result has the layout of a single TRL rollout."""
        def cat(name):
            return [x for p in parts for x in getattr(p, name)]

        steps = None if parts[0].steps is None else [[x for p in parts for x in p.steps[k]]
                                                     for k in range(len(parts[0].steps))]
        local = torch.cat([p.rewards_per_func for p in parts])
        n = len(local)
        return Scored(cat("inputs"), cat("prompts"), cat("completions"), cat("completion_ids"), gather(local), steps,
                      slice(rank * n, (rank + 1) * n))
