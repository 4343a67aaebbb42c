"""Algorithm names used by the CLI, the demo and the benchmarks, mapped to config and trainer classes (presets of
the engine; `grpo` is the engine itself with TRL's advantages).

Classes are imported on use, so listing names costs nothing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Algorithm:
    name: str
    module: str
    config: str
    trainer: str
    defaults: dict = field(default_factory=dict)  # config values that define the variant
    summary: str = ""

    def classes(self):
        mod = importlib.import_module(self.module)
        return getattr(mod, self.config), getattr(mod, self.trainer)


ALGORITHMS = {
    a.name: a
    for a in [
        Algorithm("grpo", "trl_plus.engine.trainer", "PlusGRPOConfig", "PlusGRPOTrainer", {},
                  "TRL's GRPO through the trl-plus engine: pick any --advantage_estimator and part"),
        Algorithm("dr_grpo", "trl_plus.trainers.dr_grpo", "DrGRPOConfig", "DrGRPOTrainer", {},
                  "Dr. GRPO: no std scaling, constant loss normaliser"),
        Algorithm("dapo", "trl_plus.trainers.dapo", "DAPOConfig", "DAPOTrainer", {},
                  "DAPO: clip-higher, dynamic sampling, token-level loss"),
        Algorithm("reinforce_pp", "trl_plus.trainers.reinforce_pp", "ReinforcePlusPlusConfig",
                  "ReinforcePlusPlusTrainer", {}, "REINFORCE++: KL in the reward, global whitening"),
        Algorithm("reinforce_pp_baseline", "trl_plus.trainers.reinforce_pp", "ReinforcePlusPlusConfig",
                  "ReinforcePlusPlusTrainer", {"baseline": True}, "REINFORCE++-baseline: group-mean baseline"),
        Algorithm("remax", "trl_plus.trainers.remax", "ReMaxConfig", "ReMaxTrainer", {},
                  "ReMax: greedy-rollout baseline"),
        Algorithm("rahf", "trl_plus.trainers.rahf", "RAHFConfig", "RAHFTrainer", {},
                  "RAHF/RAFT: SFT on the best of K samples"),
        Algorithm("ps_grpo", "trl_plus.trainers.process_grpo", "ProcessGRPOConfig", "ProcessGRPOTrainer", {},
                  "process-supervised GRPO: step rewards"),
        Algorithm("ppo", "trl_plus.trainers.ppo", "PPOConfig", "PPOTrainer", {},
                  "PPO: learned critic, GAE, KL in the reward"),
    ]
}


def get_algorithm(name: str) -> Algorithm:
    key = name.replace("-", "_").lower()
    if key not in ALGORITHMS:
        import difflib

        close = difflib.get_close_matches(key, ALGORITHMS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown algorithm {name!r}.{hint} Valid algorithms: {', '.join(ALGORITHMS)}.")
    return ALGORITHMS[key]


def build_trainer(name: str, *, model, reward_funcs, args, process_reward_funcs=None, **kwargs):
    """Instantiate the trainer of algorithm `name` with GRPOTrainer's arguments.

    `ps_grpo` needs step-level rewards: without `process_reward_funcs` (and no process function
    among `reward_funcs`), it uses `reward_fns`' `arithmetic_steps`.
    """
    algo = get_algorithm(name)
    _, trainer_cls = algo.classes()
    if algo.name == "ps_grpo" or getattr(args, "advantage_estimator", None) == "process":
        from reward_fns import is_process_reward

        funcs = reward_funcs if isinstance(reward_funcs, list) else [reward_funcs]
        if not process_reward_funcs and not any(is_process_reward(f) for f in funcs):
            process_reward_funcs = ["arithmetic_steps"]
        kwargs["process_reward_funcs"] = process_reward_funcs
    elif process_reward_funcs:
        kwargs["process_reward_funcs"] = process_reward_funcs  # the engine rejects them without a step estimator
    return trainer_cls(model=model, reward_funcs=reward_funcs, args=args, **kwargs)
