"""Step (process) rewards for the `process` estimator (Shao et al. 2024, DeepSeekMath, section 4.1.3,
https://huggingface.co/papers/2402.03300).

Each completion gets step rewards from process reward functions (the contract of `reward_fns.process`: one list of
`(last_char_offset, reward)` per completion). Each process function is wrapped in a `ProcessRewardAdapter` that TRL
calls like any outcome reward: it returns the completion's mean step reward (None without steps), so TRL logs
`rewards/<name>/mean`, and keeps the validated steps, which the trainer stores with the scored batch. The adapters
get weight 0 in TRL's reward total, which therefore stays the weighted total of the outcome functions.

`process_estimator` turns the steps of every process's rows into (B, T) advantages: step rewards normalised over
all steps of the group, token `t` gets the sum of those of the steps ending at or after `t`
(`core.process_advantages`); with `outcome_weight > 0` the outcome is one more step at the last token, normalised
apart from the text steps and then weighted (`process_normalisation='per_kind'`, the default) or pooled with them
after weighting ('pooled'); a KL penalty in the reward adds its returns-to-go. Step character offsets become token indices in `step_offsets`.
"""

from __future__ import annotations

import math
import warnings

import torch
from trl.trainer.utils import get_callable_name, is_async_callable

import reward_fns
from trl_plus.core import process_advantages, returns_to_go
from trl_plus.engine.step_offsets import char_to_token, check_steps, merge_steps, token_char_ends
from trl_plus.engine.training_checks import naming_reward_errors


class ProcessRewardAdapter:
    """TRL-facing stand-in for one process reward function.

    Called like an outcome reward (`(prompts, completions, **kwargs) -> list[float | None]`, B values): it
    runs the process function, validates its steps against the completion texts (`steps.check_steps`),
    keeps them in `self.steps` (B lists of `(offset, reward)`) and returns each completion's mean step
    reward, None for a completion without scorable steps. Errors of the function pass through with a note naming it.
    """

    def __init__(self, fn, name: str):
        self.fn, self.__name__, self.steps = fn, name, None

    def __call__(self, prompts=None, completions=None, **kwargs):
        with naming_reward_errors(self.__name__, "process reward function"):
            result = self.fn(prompts=prompts, completions=completions, **kwargs)
        self.steps = check_steps(result, [reward_fns.completion_text(c) for c in completions], self.__name__)
        means = []
        for steps in self.steps:
            scored = [r for _, r in steps if r is not None]
            means.append(sum(scored) / len(scored) if scored else None)
        return means


def resolve(fn):
    if isinstance(fn, str):
        fn = reward_fns.get(fn)
    if not callable(fn):
        raise TypeError(f"Process reward functions must be callables or reward_fns registry names, got {fn!r:.60}.")
    if is_async_callable(fn):
        raise TypeError(f"Process reward function {get_callable_name(fn)!r} is async; pass a synchronous function.")
    return fn


def split_rewards(reward_funcs, process_reward_funcs, args):
    """-> (outcome funcs, their weights, process funcs, their weights), checked; see `ProcessGRPOTrainer`."""
    given = [] if reward_funcs is None else list(reward_funcs) if isinstance(reward_funcs, list) else [reward_funcs]
    if process_reward_funcs is None or isinstance(process_reward_funcs, str) or callable(process_reward_funcs):
        process_reward_funcs = [] if process_reward_funcs is None else [process_reward_funcs]
    explicit = [resolve(f) for f in process_reward_funcs]
    weights = list(args.reward_weights) if args.reward_weights is not None else [1.0] * len(given)
    if len(weights) != len(given):
        raise ValueError(f"reward_weights has {len(weights)} entries for {len(given)} reward_funcs; give one "
                         f"weight per reward_funcs entry (process_reward_funcs take process_reward_weights).")
    p_weights = args.process_reward_weights or [1.0] * len(explicit)
    if len(p_weights) != len(explicit):
        raise ValueError(f"process_reward_weights has {len(p_weights)} entries for {len(explicit)} "
                         f"process_reward_funcs; give one weight per process reward function.")
    moved = {i for i, f in enumerate(given) if reward_fns.is_process_reward(f)}
    process = explicit + [resolve(f) for i, f in enumerate(given) if i in moved]
    process_weights = [float(w) for w in p_weights] + [float(w) for i, w in enumerate(weights) if i in moved]
    outcome = [f for i, f in enumerate(given) if i not in moved]
    outcome_weights = [float(w) for i, w in enumerate(weights) if i not in moved]
    if not process:
        raise ValueError("advantage_estimator='process' (ProcessGRPOTrainer) needs at least one process reward "
                         "function: pass "
                         "process_reward_funcs=[...] (a callable returning (offset, reward) steps per completion, "
                         "or a reward_fns name such as 'arithmetic_steps'), or use GRPOTrainer for outcome rewards.")
    if args.outcome_weight > 0 and not outcome:
        raise ValueError(f"outcome_weight={args.outcome_weight} but no outcome reward function was given: pass "
                         f"outcome rewards in reward_funcs, or set outcome_weight=0.")
    if outcome and args.outcome_weight == 0:
        warnings.warn("outcome_weight=0: the outcome reward_funcs are only logged, not trained on; set "
                      "outcome_weight > 0 to add them as a final step.", stacklevel=3)
    return outcome, outcome_weights, process, process_weights


def attach_process_rewards(trainer, call: dict, process_reward_funcs, args) -> list[float] | None:
    """Before `GRPOTrainer.__init__`: with a step-reward estimator, replace `call["reward_funcs"]` by the outcome
    functions followed by one `ProcessRewardAdapter` per process function (TRL then scores and logs them as it does
    any reward); sets `trainer.process_adapters`, `trainer.process_weights`. Returns the outcome weights (None
    without step rewards)."""
    trainer.process_adapters, trainer.process_weights = [], []
    if not trainer.estimator.needs_step_rewards:
        if process_reward_funcs:
            raise ValueError(f"process_reward_funcs need a step-reward estimator: set advantage_estimator='process' "
                             f"(ProcessGRPOConfig), not {trainer.estimator.name!r}, or pass no process_reward_funcs.")
        return None
    outcome, outcome_weights, process, trainer.process_weights = split_rewards(
        call["reward_funcs"], process_reward_funcs, args)
    trainer.process_adapters = [ProcessRewardAdapter(f, get_callable_name(f)) for f in process]
    call["reward_funcs"] = outcome + trainer.process_adapters
    return outcome_weights


def set_reward_columns(trainer, outcome_weights: list[float] | None) -> None:
    """After `GRPOTrainer.__init__`: `reward_weights` (the outcome total, adapters at 0), `signal_weights` (the
    dynamic-sampling filter's total, adapters at their process weights) and `_outcome_columns`."""
    trainer._outcome_columns = list(range(len(trainer.reward_funcs)))
    trainer.signal_weights = trainer.reward_weights.clone()
    if not trainer.process_adapters:
        return
    n_out, n_proc = len(outcome_weights), len(trainer.process_adapters)
    trainer.reward_weights[:n_out] = torch.tensor(outcome_weights, dtype=torch.float32)
    trainer.reward_weights[n_out:n_out + n_proc] = 0.0  # adapters: logged, never in the outcome total
    trainer._outcome_columns = [i for i in range(len(trainer.reward_funcs)) if not n_out <= i < n_out + n_proc]
    trainer.signal_weights = trainer.reward_weights.clone()
    trainer.signal_weights[n_out:n_out + n_proc] = torch.tensor(trainer.process_weights, dtype=torch.float32)


def local_step_rows(trainer, scored) -> list[tuple[list[int], list[float | None], int]]:
    """This process's B rows: (token index of each step's end, step rewards, completion length in tokens)."""
    ids = [list(map(int, x)) for x in scored.completion_ids]
    texts = [reward_fns.completion_text(c) for c in scored.completions]
    char_ends = token_char_ends(trainer._tokenizer, ids, texts)
    steps = merge_steps(scored.steps, trainer.process_weights)
    return [([char_to_token(ends, o) for o, _ in row], [r for _, r in row], len(x))
            for row, ends, x in zip(steps, char_ends, ids)]


def process_estimator(ctx) -> torch.Tensor:
    """(B, T) advantages of this process's rows from the steps of every process's completions."""
    mask = ctx.mask
    token_ends = [list(e) for e in ctx.step_token_ends]
    rewards = [list(r) for r in ctx.step_rewards]
    lengths = ctx.completion_lengths.to(mask.device)
    text_steps = [len(r) for r in rewards]
    kinds = [[0] * n for n in text_steps]  # 0: a text step, 1: the outcome step
    weight, per_kind = ctx.args.outcome_weight, ctx.args.process_normalisation == "per_kind"
    if weight > 0:
        outcome = ctx.rewards.tolist()
        for n, length in enumerate(lengths.tolist()):
            if length > 0:  # the outcome step ends at the last completion token (EOS when there is one)
                token_ends[n].append(length - 1)
                kinds[n].append(1 if per_kind else 0)
                rewards[n].append(None if math.isnan(outcome[n]) else outcome[n] * (1.0 if per_kind else weight))
    width = max(int(lengths.max()), mask.size(1), 1)
    full_mask = (torch.arange(width, device=mask.device)[None, :] < lengths[:, None]).long()
    group_ids = ctx.group_ids.to(mask.device)
    advantages = process_advantages(rewards, token_ends, group_ids, full_mask,  # (N, width)
                                    step_kinds=kinds, kind_weights=[1.0, weight])
    log_process_metrics(ctx, rewards, text_steps, advantages, group_ids)
    local = advantages[ctx.local, : mask.size(1)] * mask
    if ctx.kl is not None and ctx.kl_coef != 0.0:  # the KL penalty of the reward, as returns-to-go
        local = local + returns_to_go(torch.where(mask.bool(), -ctx.kl_coef * ctx.kl, 0.0), mask)
    return local


def log_process_metrics(ctx, rewards, text_steps, advantages, group_ids) -> None:
    """Process metrics, and the GRPO numbers TRL logged from its (here unused) sequence advantages."""
    step_rewards = [r for row, n in zip(rewards, text_steps) for r in row[:n] if r is not None]
    ctx.log("process/steps_per_completion", sum(text_steps) / max(len(text_steps), 1))
    ctx.log("process/step_reward_mean", sum(step_rewards) / len(step_rewards) if step_rewards else math.nan)
    trainer = ctx.trainer
    if trainer is None:
        return
    metrics = trainer._metrics[trainer.mode]
    # Groups that give no learning signal: every advantage of every member is 0.
    silent = torch.zeros(int(group_ids.max()) + 1, device=advantages.device)
    silent.index_add_(0, group_ids, advantages.abs().sum(dim=1))
    if metrics["frac_reward_zero_std"]:
        metrics["frac_reward_zero_std"][-1] = (silent == 0).float().mean().item()
    if len(trainer._outcome_columns) == 0 and metrics["reward"]:  # TRL's "reward" is the empty outcome total
        per_row = torch.tensor([sum(s) / len(s) if s else math.nan for s in
                                ([r for r in row[:n] if r is not None] for row, n in zip(rewards, text_steps))])
        valid = per_row[~torch.isnan(per_row)]
        metrics["reward"][-1] = valid.mean().item() if len(valid) else math.nan
        metrics["reward_std"][-1] = valid.std().item() if len(valid) > 1 else 0.0
