"""Process-supervised GRPO on TRL's GRPOTrainer (Shao et al. 2024, DeepSeekMath, section 4.1.3,
https://huggingface.co/papers/2402.03300).

Each completion gets step rewards from process reward functions (the contract of `reward_fns.process`:
one list of `(last_char_offset, reward)` per completion). Step rewards are normalised over all steps
of all completions of the group, and token `t` gets the sum of the normalised rewards of the steps
ending at or after `t` (`trl_plus.core.process_advantages`), so the advantages are (B, T).

How the process rewards reach TRL: each process function is wrapped in a `ProcessRewardAdapter`
that TRL calls like any outcome reward. It returns the completion's mean step reward (None without
steps), so TRL logs `rewards/<name>/mean`, and keeps the validated steps of this process's rows for
`compute_advantages`. The adapters get weight 0 in TRL's reward total, which therefore stays the
weighted total of the outcome functions (`reward_weights`), as in `GRPOTrainer`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from accelerate.utils import gather_object
from trl import GRPOConfig
from trl.trainer.utils import get_callable_name, is_async_callable

import reward_fns
from trl_plus.core import process_advantages
from trl_plus.trainers.base import PlusGRPOTrainer
from trl_plus.trainers.steps import char_to_token, check_steps, merge_steps, token_char_ends


@dataclass
class ProcessGRPOConfig(GRPOConfig):
    """Configuration of `ProcessGRPOTrainer`: `GRPOConfig` plus how outcome and process rewards mix."""

    outcome_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of the outcome reward (the `reward_weights`-weighted total of `reward_funcs`), "
                          "which enters as one extra step ending at the last completion token with reward "
                          "outcome_weight * r. 0: outcome functions are only logged. Must be >= 0 (to invert an "
                          "outcome reward, give it a negative entry in `reward_weights`)."},
    )
    process_reward_weights: list[float] | None = field(
        default=None,
        metadata={"help": "One weight per entry of the trainer's `process_reward_funcs` (default 1.0 each). Steps "
                          "of several functions ending at the same character are summed with these weights. "
                          "Process functions given in `reward_funcs` take their `reward_weights` entry instead."},
    )

    def __post_init__(self):
        super().__post_init__()
        if not math.isfinite(self.outcome_weight) or self.outcome_weight < 0:
            raise ValueError(f"outcome_weight must be a finite number >= 0 (got {self.outcome_weight}); to invert "
                             f"an outcome reward give it a negative entry in `reward_weights`.")
        if self.process_reward_weights is not None and not all(map(math.isfinite, self.process_reward_weights)):
            raise ValueError(f"process_reward_weights must be finite numbers, got {self.process_reward_weights}.")


class ProcessRewardAdapter:
    """TRL-facing stand-in for one process reward function.

    Called like an outcome reward (`(prompts, completions, **kwargs) -> list[float | None]`, B values): it
    runs the process function, validates its steps against the completion texts (`steps.check_steps`),
    keeps them in `self.steps` (B lists of `(offset, reward)`) and returns each completion's mean step
    reward, None for a completion without scorable steps. Errors of the function are re-raised naming it.
    """

    def __init__(self, fn, name: str):
        self.fn, self.__name__, self.steps = fn, name, None

    def __call__(self, prompts=None, completions=None, **kwargs):
        try:
            result = self.fn(prompts=prompts, completions=completions, **kwargs)
        except Exception as exc:
            message = f"Process reward function {self.__name__!r} raised {type(exc).__name__}: {exc}"
            try:
                error = type(exc)(message)
            except Exception:  # noqa: BLE001 - an exception type with another constructor
                error = RuntimeError(message)
            raise error from exc
        self.steps = check_steps(result, [reward_fns.completion_text(c) for c in completions], self.__name__)
        means = []
        for steps in self.steps:
            scored = [r for _, r in steps if r is not None]
            means.append(sum(scored) / len(scored) if scored else None)
        return means


def _resolve(fn):
    if isinstance(fn, str):
        fn = reward_fns.get(fn)
    if not callable(fn):
        raise TypeError(f"Process reward functions must be callables or reward_fns registry names, got {fn!r:.60}.")
    if is_async_callable(fn):
        raise TypeError(f"Process reward function {get_callable_name(fn)!r} is async; pass a synchronous function.")
    return fn


def _split_rewards(reward_funcs, process_reward_funcs, args):
    """-> (outcome funcs, their weights, process funcs, their weights), checked; see `ProcessGRPOTrainer`."""
    given = [] if reward_funcs is None else list(reward_funcs) if isinstance(reward_funcs, list) else [reward_funcs]
    if process_reward_funcs is None or isinstance(process_reward_funcs, str) or callable(process_reward_funcs):
        process_reward_funcs = [] if process_reward_funcs is None else [process_reward_funcs]
    explicit = [_resolve(f) for f in process_reward_funcs]
    weights = list(args.reward_weights) if args.reward_weights is not None else [1.0] * len(given)
    if len(weights) != len(given):
        raise ValueError(f"reward_weights has {len(weights)} entries for {len(given)} reward_funcs; give one "
                         f"weight per reward_funcs entry (process_reward_funcs take process_reward_weights).")
    p_weights = args.process_reward_weights or [1.0] * len(explicit)
    if len(p_weights) != len(explicit):
        raise ValueError(f"process_reward_weights has {len(p_weights)} entries for {len(explicit)} "
                         f"process_reward_funcs; give one weight per process reward function.")
    moved = {i for i, f in enumerate(given) if reward_fns.is_process_reward(f)}
    process = explicit + [_resolve(f) for i, f in enumerate(given) if i in moved]
    process_weights = [float(w) for w in p_weights] + [float(w) for i, w in enumerate(weights) if i in moved]
    outcome = [f for i, f in enumerate(given) if i not in moved]
    outcome_weights = [float(w) for i, w in enumerate(weights) if i not in moved]
    if not process:
        raise ValueError("ProcessGRPOTrainer needs at least one process reward function: pass "
                         "process_reward_funcs=[...] (a callable returning (offset, reward) steps per completion, "
                         "or a reward_fns name such as 'arithmetic_steps'), or use GRPOTrainer for outcome rewards.")
    if args.outcome_weight > 0 and not outcome:
        raise ValueError(f"outcome_weight={args.outcome_weight} but no outcome reward function was given: pass "
                         f"outcome rewards in reward_funcs, or set outcome_weight=0.")
    if outcome and args.outcome_weight == 0:
        warnings.warn("outcome_weight=0: the outcome reward_funcs are only logged, not trained on; set "
                      "outcome_weight > 0 to add them as a final step.", stacklevel=3)
    return outcome, outcome_weights, process, process_weights


class ProcessGRPOTrainer(PlusGRPOTrainer):
    """Process-supervised GRPO (DeepSeekMath section 4.1.3, https://huggingface.co/papers/2402.03300).

    Takes the same arguments as `trl.GRPOTrainer`, plus the keyword `process_reward_funcs`: callables or
    `reward_fns` registry names following the process reward contract (`(prompts, completions, **kwargs)`
    -> B lists of `(last_char_offset, reward)`). Process functions passed in `reward_funcs` (those with
    `process_reward = True`, e.g. `reward_fns.get("arithmetic_steps")`) are moved there too, weighted by
    their `reward_weights` entry; the rest of `reward_funcs` are outcome rewards, whose `reward_weights`-
    weighted total enters, times `outcome_weight`, as one extra step at the last completion token.

    Advantages, (B, T): the steps of all processes are gathered (N rows), `process_advantages` runs once on
    the global (N, T_max) batch, and this process's B rows are cut to its T. Logged: `process/steps_per_
    completion`, `process/step_reward_mean`, `rewards/<process fn>/mean` (mean step reward per completion);
    `frac_reward_zero_std` is re-logged as the fraction of groups whose advantages are all 0, and, without
    outcome functions, `reward`/`reward_std` as the per-completion mean step reward. Tool calling and
    response parsing (completion text not equal to the decoded completion) are not supported.
    """

    _tag_names: ClassVar[list[str]] = ["trl", "trl-plus", "process-grpo"]
    config_class = ProcessGRPOConfig

    def __init__(self, model, reward_funcs=None, args: ProcessGRPOConfig | None = None, *more,
                 process_reward_funcs=None, **kwargs):
        args = self.resolve_config(model, args)
        outcome, outcome_weights, process, self.process_weights = _split_rewards(reward_funcs, process_reward_funcs,
                                                                                 args)
        self.process_adapters = [ProcessRewardAdapter(f, get_callable_name(f)) for f in process]
        # TRL checks reward_weights against its (outcome + adapter) list; lend it None, then set the weights.
        saved, args.reward_weights = args.reward_weights, None
        try:
            super().__init__(model, outcome + self.process_adapters, args, *more, **kwargs)
        finally:
            args.reward_weights = saved
        n_out, n_proc = len(outcome), len(process)
        self.reward_weights[:n_out] = torch.tensor(outcome_weights, dtype=torch.float32)
        self.reward_weights[n_out:n_out + n_proc] = 0.0  # adapters: logged, never in the outcome total
        self._outcome_columns = [i for i in range(len(self.reward_funcs)) if not n_out <= i < n_out + n_proc]

    def compute_advantages(self, out):
        """(B, T) advantages of this process's rows from the steps of every process's completions."""
        mask = self.loss_mask(out)
        rows = self._gather_rows(self._local_step_rows())  # N rows, every process's, in process order
        token_ends, rewards = [list(r[0]) for r in rows], [list(r[1]) for r in rows]
        lengths = torch.tensor([r[2] for r in rows], device=mask.device)
        text_steps = [len(r) for r in rewards]
        if self.args.outcome_weight > 0:
            outcome = self._outcome_rewards()
            for n, length in enumerate(lengths.tolist()):
                if length > 0:  # the outcome step ends at the last completion token (EOS when there is one)
                    r = outcome[n].item()
                    token_ends[n].append(length - 1)
                    rewards[n].append(None if math.isnan(r) else self.args.outcome_weight * r)
        width = max(int(lengths.max()), mask.size(1), 1)
        full_mask = (torch.arange(width, device=mask.device)[None, :] < lengths[:, None]).long()
        group_ids = self.group_ids(len(rows)).to(mask.device)
        advantages = process_advantages(rewards, token_ends, group_ids, full_mask)  # (N, width)
        self._log_process_metrics(rewards, text_steps, advantages, group_ids)
        return advantages[self.local_rows(mask.size(0)), : mask.size(1)] * mask

    def _local_step_rows(self) -> list[tuple[list[int], list[float | None], int]]:
        """This process's B rows: (token index of each step's end, step rewards, completion length in tokens)."""
        scored = self._scored
        ids = [list(map(int, x)) for x in scored.completion_ids]
        texts = [reward_fns.completion_text(c) for c in scored.completions]
        char_ends = token_char_ends(self._tokenizer, ids, texts)
        steps = merge_steps([a.steps for a in self.process_adapters], self.process_weights)
        return [([char_to_token(ends, o) for o, _ in row], [r for _, r in row], len(x))
                for row, ends, x in zip(steps, char_ends, ids)]

    def _gather_rows(self, rows: list) -> list:
        """The rows of every process, concatenated in process order (TRL's order of the gathered rewards)."""
        return gather_object(rows) if self.accelerator.num_processes > 1 else rows

    def _outcome_rewards(self) -> torch.Tensor:
        """Weighted total of the outcome functions only, (N,); NaN where all of them abstained."""
        rpf = self._scored.rewards_per_func[:, self._outcome_columns]
        weights = self.reward_weights[self._outcome_columns].to(rpf.device)
        total = (rpf * weights).nansum(dim=1)
        total[torch.isnan(rpf).all(dim=1)] = torch.nan
        return total

    def _log_process_metrics(self, rewards, text_steps, advantages, group_ids) -> None:
        """Process metrics, and the GRPO numbers TRL logged from its (here unused) sequence advantages."""
        step_rewards = [r for row, n in zip(rewards, text_steps) for r in row[:n] if r is not None]
        self.log_metric("process/steps_per_completion", sum(text_steps) / max(len(text_steps), 1))
        self.log_metric("process/step_reward_mean", sum(step_rewards) / len(step_rewards) if step_rewards else math.nan)
        metrics = self._metrics[self.mode]
        # Groups that give no learning signal: every advantage of every member is 0.
        silent = torch.zeros(int(group_ids.max()) + 1, device=advantages.device)
        silent.index_add_(0, group_ids, advantages.abs().sum(dim=1))
        metrics["frac_reward_zero_std"][-1] = (silent == 0).float().mean().item()
        if len(self._outcome_columns) == 0:  # TRL's "reward" is the (empty) outcome total: log the step rewards
            per_row = torch.tensor([sum(s) / len(s) if s else math.nan for s in
                                    ([r for r in row[:n] if r is not None] for row, n in zip(rewards, text_steps))])
            valid = per_row[~torch.isnan(per_row)]
            metrics["reward"][-1] = valid.mean().item() if len(valid) else math.nan
            metrics["reward_std"][-1] = valid.std().item() if len(valid) > 1 else 0.0
