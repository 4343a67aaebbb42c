"""The greedy-rollout baseline of ReMax (Li et al. 2023, https://huggingface.co/papers/2310.10505).

For every unique prompt the current policy also decodes one *greedy* completion (`do_sample=False`, same
`max_completion_length`, eval mode), the same reward functions score it, and its reward is the baseline of the
prompt's sampled completions (estimator `remax`). The greedy completions are never trained on.

TRL has no hook for a second rollout, so it is run after TRL has generated and scored the sampled batch. It goes
through TRL's own `_generate` (tokenisation, chat template, decoding, tools) with `self.generation_config` swapped
for a greedy copy, and through TRL's own `_calculate_rewards`. Side effects that belong to the sampled batch only
(generation metrics, `num_input_tokens_seen`, reward functions' pending logs, `self._scored`) are put back.
Greedy decoding through vLLM or a custom `rollout_func` is not implemented.
"""

from __future__ import annotations

import contextlib
import copy

import torch


class GreedyBaseline:
    """Mixin of `PlusGRPOTrainer`: `greedy_baseline(n_local)` decodes and scores the greedy completions."""

    @staticmethod
    def greedy_plan(num_processes: int, n_local: int, group_size: int) -> list[list[int]]:
        """For each process, the groups (prompts) among its rows, in order. A group can span processes."""
        return [sorted({i // group_size for i in range(p * n_local, (p + 1) * n_local)}) for p in range(num_processes)]

    @staticmethod
    def baseline_per_group(greedy_rewards: torch.Tensor, plan: list[list[int]], num_groups: int) -> torch.Tensor:
        """(num_groups,) greedy reward of each group from the gathered (P * width,) rewards of the greedy rollout.

        Process `p` scored its groups `plan[p]` in slots `p * width + j` (padded to `width`); a group that spans
        processes was decoded by each of them, and the first copy counts.
        """
        width = max(map(len, plan))
        baseline = torch.full((num_groups,), torch.nan, dtype=greedy_rewards.dtype, device=greedy_rewards.device)
        done = [False] * num_groups
        for p, groups in enumerate(plan):
            for j, g in enumerate(groups):
                if not done[g]:
                    baseline[g], done[g] = greedy_rewards[p * width + j], True
        return baseline

    @contextlib.contextmanager
    def _greedy_rollout(self):
        """Swap in a greedy generation config and eval mode; undo the rollout's side effects on the sampled batch's
        logs and restore the model's mode.

        Eval mode makes the baseline the deterministic greedy completion: in train mode, dropout would make it a
        random one and draw from the global RNG. TRL logs generation metrics under the current mode, so both
        modes' metrics are put back.
        """
        sampling = self.generation_config
        greedy = copy.deepcopy(sampling)
        greedy.do_sample = False
        greedy.temperature = greedy.top_p = greedy.top_k = greedy.min_p = None  # sampling-only knobs
        saved = {mode: {k: list(v) for k, v in metrics.items()} for mode, metrics in self._metrics.items()}
        tokens_seen = self.state.num_input_tokens_seen
        training = self.model.training
        self.generation_config = greedy
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(training)
            self.generation_config = sampling
            for mode, metrics in self._metrics.items():
                metrics.clear()
                metrics.update(saved[mode])
            self.state.num_input_tokens_seen = tokens_seen
            self._pending_extra_logs.clear()
            self._pending_metrics.clear()

    def greedy_baseline(self, n_local: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode and score one greedy completion per prompt of this process's rows.

        Returns `(r_greedy_local, greedy_per_group)`: the (B,) baseline of each local row, and the greedy reward
        of every prompt of the global batch. Every process decodes the same number of prompts (the largest count
        over processes, padded with repeats), because `_calculate_rewards` gathers across processes.
        """
        scored = self._scored
        rank, size, G = self.accelerator.process_index, self.accelerator.num_processes, self.group_size
        plan = self.greedy_plan(size, n_local, G)
        first_row = {}
        for i in range(n_local):
            first_row.setdefault((rank * n_local + i) // G, i)
        rows = [first_row[g] for g in plan[rank]]
        rows += rows[-1:] * (max(map(len, plan)) - len(rows))
        prompts = [scored.prompts[i] for i in rows]
        inputs = [scored.inputs[i] for i in rows]
        with self._greedy_rollout():
            _, completion_ids, _, completions, *_ = self._generate(prompts)
            rewards_per_func = self._calculate_rewards(inputs, prompts, completions, completion_ids)
        self._scored = scored  # the base class keeps what was scored last: keep the sampled batch's
        greedy = self.baseline_per_group(self.total_rewards(rewards_per_func), plan, size * n_local // G)
        local_groups = self.group_ids(size * n_local)[self.local_rows(n_local)]
        return greedy[local_groups], greedy
