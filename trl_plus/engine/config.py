"""`PlusGRPOConfig`: `GRPOConfig` plus every part of the engine, each usable with every advantage estimator.

Incompatible choices fail here, at construction, with a message that names the fix. The named algorithms
(`trl_plus.trainers.*`) are subclasses that change defaults and add their paper's checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import ClassVar

from trl import GRPOConfig

from trl_plus.core import KL_ESTIMATORS
from trl_plus.engine.best_of_k import SELECTIONS
from trl_plus.engine.kl_loss import SUPPORTED_LOSS_TYPES
from trl_plus.engine.machine import machine_defaults


@dataclass
class PlusGRPOConfig(GRPOConfig):
    """Configuration of `PlusGRPOTrainer`: `GRPOConfig` plus the estimator choice and the composable parts.

    `bf16` and `use_cpu` default to what the machine supports when left unset (no bf16 and CPU without a GPU).
    """

    trains_critic: ClassVar[bool] = False  # True for the config of a trainer with a critic (PPOConfig)

    # ----- advantages -----
    advantage_estimator: str = field(
        default="grpo",
        metadata={"help": "Name in the estimator registry (trl_plus.engine.estimators.ESTIMATORS): 'grpo' (TRL's "
                          "own), 'dr_grpo', 'rloo', 'reinforce_pp', 'reinforce_pp_baseline', 'remax' (greedy "
                          "baseline), 'process' (step rewards), 'raft' (best-of-K + NLL), 'gae' (learned critic: "
                          "PPOConfig / PPOTrainer only), or one added with trl_plus.register_estimator."},
    )
    kl_in_reward_coef: float = field(
        default=0.0,
        metadata={"help": "Coefficient of the per-token KL penalty (rollout policy vs reference) in the reward; 0 "
                          "disables it. Token-level estimators get it on every token; sequence-level ones get the "
                          "reward minus the coefficient times the completion's summed KL."},
    )
    kl_in_reward_estimator: str = field(
        default="k1", metadata={"help": "KL estimator in the reward: 'k1', 'k2', 'k3' or 'abs' (Schulman 2020)."}
    )
    kl_in_loss_estimator: str = field(
        default="k3",
        metadata={"help": "KL estimator of TRL's `beta` term in the loss (TRL: k3), aggregated like the loss for "
                          "loss_type: 'k1', 'k2', 'k3' or 'abs'. TRL's use_bias_correction_kl applies to k3 only."},
    )
    gamma: float = field(default=1.0, metadata={"help": "Discount of the returns-to-go in [0, 1] (estimators that "
                                                        "compute returns: reinforce_pp, reinforce_pp_baseline, gae)."})
    reward_clip: float | None = field(
        default=None, metadata={"help": "Clip the total reward to [-reward_clip, reward_clip]; None: no clipping."}
    )
    # ----- dynamic sampling (DAPO) -----
    dynamic_sampling: bool = field(
        default=False,
        metadata={"help": "Drop groups whose filter metric has zero spread and draw new prompts until the batch is "
                          "full again (training only; DAPO, https://huggingface.co/papers/2503.14476)."},
    )
    max_num_gen_batches: int = field(default=10, metadata={"help": "Most generation rounds per batch with dynamic "
                                                                   "sampling; 0 = no limit."})
    dynamic_sampling_metric: str | None = field(
        default=None,
        metadata={"help": "Name of the reward function whose spread decides if a group is kept (e.g. the accuracy "
                          "reward); None = the weighted total reward."},
    )
    dynamic_sampling_strict: bool = field(
        default=False,
        metadata={"help": "Raise when max_num_gen_batches rounds do not yield enough groups, instead of warning and "
                          "training on what survived."},
    )
    overlong_buffer_len: int | None = field(
        default=None,
        metadata={"help": "Overlong reward shaping: when set, TRL's soft overlong punishment with this buffer "
                          "(L_cache) and L_max = max_completion_length is added as a reward function (weight 1). "
                          "Must be in [1, max_completion_length - 1]."},
    )
    # ----- best-of-K (advantage_estimator='raft') -----
    selection: str = field(
        default="best_per_prompt",
        metadata={"help": "raft: which samples to train on: 'best_per_prompt' or 'top_fraction' (the best "
                          "`keep_fraction` of the whole generation batch)."},
    )
    keep_fraction: float | None = field(
        default=None,
        metadata={"help": "raft with selection='top_fraction': fraction of the generation batch to keep, in (0, 1]. "
                          "None keeps 1 / num_generations."},
    )
    min_reward: float | None = field(
        default=None, metadata={"help": "raft: keep a selected completion only if its reward is >= min_reward."}
    )
    # ----- step rewards (advantage_estimator='process') -----
    outcome_weight: float = field(
        default=0.0,
        metadata={"help": "process: weight of the outcome reward (the weighted total of the outcome reward_funcs), "
                          "which enters as one extra step at the last completion token. Must be >= 0."},
    )
    process_reward_weights: list[float] | None = field(
        default=None,
        metadata={"help": "process: one weight per entry of the trainer's `process_reward_funcs` (default 1.0)."},
    )
    process_normalisation: str = field(
        default="per_kind",
        metadata={"help": "process, with outcome_weight > 0: 'per_kind' (default) normalises the text steps and the "
                          "outcome step apart, each within the group, and then weighs the outcome by outcome_weight "
                          "against the text steps; 'pooled' normalises all steps together (weights applied before), "
                          "which turns every text step negative once most outcomes are right."},
    )
    # ----- machine defaults -----
    use_cpu: bool | None = field(
        default=None, metadata={"help": "Train on the CPU. None (default): on when the machine has no GPU."}
    )

    def __post_init__(self):
        machine_defaults(self)
        super().__post_init__()
        check(self)


_ENGINE_DEFAULTS = {f.name: f.default for f in fields(PlusGRPOConfig)}


def setting(args, name: str):
    """`args.<name>`, or the engine's default when `args` is a config without the engine's fields (a plain
    `GRPOConfig` subclass of a trainer built on the engine)."""
    return getattr(args, name, _ENGINE_DEFAULTS[name])


def _fail(message: str) -> None:
    raise ValueError(message)


def check(args: PlusGRPOConfig) -> None:
    """The engine's config-time checks (each error names the fix)."""
    from trl_plus.engine.estimators import get_estimator

    spec = get_estimator(args.advantage_estimator)
    if spec.needs_critic and not type(args).trains_critic:
        _fail(critic_missing(spec.name, type(args).__name__))
    for name in ("kl_in_reward_estimator", "kl_in_loss_estimator"):
        if getattr(args, name) not in KL_ESTIMATORS:
            _fail(f"{name}={getattr(args, name)!r} is not a KL estimator: use one of {KL_ESTIMATORS}.")
    if not args.kl_in_reward_coef >= 0:
        _fail(f"kl_in_reward_coef must be >= 0 (got {args.kl_in_reward_coef}); use 0 to switch the KL reward off.")
    if not 0.0 <= args.gamma <= 1.0:
        _fail(f"gamma must be in [0, 1] (got {args.gamma}); 1 is the undiscounted return.")
    if args.gamma != 1.0 and not spec.uses_gamma:
        _fail(f"gamma={args.gamma} has no effect with advantage_estimator={spec.name!r}, which computes no "
              "returns-to-go: set gamma=1, or use reinforce_pp / reinforce_pp_baseline / gae (PPO).")
    if args.reward_clip is not None and not args.reward_clip > 0:
        _fail(f"reward_clip must be > 0 or None (got {args.reward_clip}).")
    if args.beta != 0.0 and args.kl_in_loss_estimator != "k3" and args.loss_type not in SUPPORTED_LOSS_TYPES:
        _fail(f"kl_in_loss_estimator={args.kl_in_loss_estimator!r} does not support loss_type={args.loss_type!r}:"
              f" use one of {SUPPORTED_LOSS_TYPES}, or kl_in_loss_estimator='k3'.")
    if spec.name == "grpo" and (args.kl_in_reward_coef > 0 or args.reward_clip is not None) and (
            args.scale_rewards == "batch" or args.multi_objective_aggregation == "normalize_then_sum"):
        _fail("advantage_estimator='grpo' with kl_in_reward_coef or reward_clip recomputes the group advantages: set "
              "scale_rewards='group' (or 'none') and multi_objective_aggregation='sum_then_normalize'.")
    if spec.needs_greedy_baseline and args.use_vllm:
        raise NotImplementedError(f"advantage_estimator={spec.name!r} decodes a greedy baseline through "
                                  "transformers' generate; greedy decoding with vLLM is not implemented. Set "
                                  "use_vllm=False.")
    if spec.loss == "nll" and args.beta != 0.0:
        _fail(f"advantage_estimator={spec.name!r} trains with the NLL of the kept completions and has no KL term: "
              "set beta=0.0.")
    _check_dynamic_sampling(args, spec)
    _check_best_of_k(args, spec)
    if not math.isfinite(args.outcome_weight) or args.outcome_weight < 0:
        _fail(f"outcome_weight must be a finite number >= 0 (got {args.outcome_weight}); to invert an outcome "
              "reward give it a negative entry in `reward_weights`.")
    if args.process_reward_weights is not None and not all(map(math.isfinite, args.process_reward_weights)):
        _fail(f"process_reward_weights must be finite numbers, got {args.process_reward_weights}.")
    if args.process_normalisation not in ("per_kind", "pooled"):
        _fail(f"process_normalisation must be 'per_kind' or 'pooled', got {args.process_normalisation!r}.")


def critic_missing(estimator: str, owner: str) -> str:
    """The error for an estimator that needs a critic, chosen with a config or trainer that has none."""
    return (f"advantage_estimator={estimator!r} needs a learned critic (value model), which {owner} does not train: "
            "use trl_plus.PPOConfig with trl_plus.PPOTrainer (CLI: trl-plus train ppo), or a critic-free estimator "
            "such as 'reinforce_pp' or 'grpo'.")


def _check_dynamic_sampling(args, spec) -> None:
    if args.max_num_gen_batches < 0:
        _fail(f"max_num_gen_batches must be >= 0 (got {args.max_num_gen_batches}): use a positive cap on the "
              "generation rounds per batch, or 0 for no limit.")
    lmax, buffer = args.max_completion_length, args.overlong_buffer_len
    if buffer is not None and (lmax is None or not 0 < buffer < lmax):
        _fail(f"overlong_buffer_len ({buffer}) must be in [1, max_completion_length - 1] (max_completion_length="
              f"{lmax}): the soft punishment starts at max_completion_length - overlong_buffer_len. Pick a smaller "
              "buffer (e.g. a fifth of max_completion_length) or None.")
    if not args.dynamic_sampling:
        return
    if spec.name == "grpo" and (args.scale_rewards == "batch"
                                or args.multi_objective_aggregation == "normalize_then_sum"):
        # TRL's advantages of a kept group must not depend on the dropped groups.
        _fail("dynamic_sampling keeps TRL's group-normalised advantages of the surviving groups, which must not "
              "depend on other groups: set scale_rewards='group' (or 'none') and multi_objective_aggregation="
              "'sum_then_normalize', or set dynamic_sampling=False.")
    local = args.per_device_train_batch_size * args.steps_per_generation
    if local % args.num_generations != 0:
        _fail(f"dynamic_sampling needs whole groups on every process: the per-process generation batch "
              f"per_device_train_batch_size * steps_per_generation = {args.per_device_train_batch_size} * "
              f"{args.steps_per_generation} = {local} must be divisible by num_generations ({args.num_generations})."
              " Change per_device_train_batch_size or steps_per_generation (or num_generations), or set "
              "dynamic_sampling=False.")


def _check_best_of_k(args, spec) -> None:
    if args.selection not in SELECTIONS:
        _fail(f"selection={args.selection!r} is unknown: use one of {SELECTIONS}.")
    if args.keep_fraction is not None and not 0.0 < args.keep_fraction <= 1.0:
        _fail(f"keep_fraction must be in (0, 1] (got {args.keep_fraction}): e.g. keep_fraction=0.25 keeps the best "
              "quarter of the batch, or None for 1 / num_generations.")
    if args.keep_fraction is not None and args.selection != "top_fraction":
        _fail(f"keep_fraction={args.keep_fraction} only applies to selection='top_fraction': set "
              "selection='top_fraction' or leave keep_fraction=None.")


def apply_alias(args, alias: str, target: str) -> None:
    """A preset's field `alias` (e.g. REINFORCE++'s `kl_coef`) is another name of the engine field `target`.

    A value given for the alias is copied to the target; different values given for both are an error. Afterwards
    both hold the same value, so code and configs that read either name agree. Call before the engine's checks.
    """
    value, current = getattr(args, alias), getattr(args, target)
    if value is not None and value != current:
        if current != type(args).__dataclass_fields__[target].default:
            _fail(f"{alias}={value!r} and {target}={current!r} are the same setting ({alias} is "
                  f"{type(args).__name__}'s "
                  f"name for {target}) with different values: set only one of them.")
        setattr(args, target, value)
    setattr(args, alias, getattr(args, target))


def check_kl_aliases(args, names: tuple[str, ...]) -> None:
    """Errors that name a preset's own KL fields (the engine's checks would name the engine's fields)."""
    for name in names:
        value = getattr(args, name)
        if name.endswith("estimator") and value is not None and value not in KL_ESTIMATORS:
            _fail(f"{name}={value!r} is not a KL estimator: use one of {KL_ESTIMATORS}.")
        if name.endswith("coef") and value is not None and not value >= 0:
            _fail(f"{name} must be >= 0 (got {value}); use 0 to switch the KL penalty off.")
