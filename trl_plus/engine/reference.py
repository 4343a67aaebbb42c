"""The reference policy is the policy as it was handed to the trainer.

TRL's `GRPOTrainer` builds its reference model (full fine-tuning with `beta > 0`, and here whenever the KL sits in
the reward) by loading `model.config._name_or_path` from disk. When the policy is passed as a model object that
was changed in memory since it was loaded (the usual SFT-then-RL script: `SFTTrainer(...).train()`, then
`trainer.model` into an RL trainer), that checkpoint is the model *before* SFT. Every KL term then measures the
distance to the wrong model: on the demo task a per-token k1 of about 4.6 from the first step, which pushed PPO
and REINFORCE++ to ever shorter completions until accuracy reached 0.

`match_reference_to_policy` copies the policy's weights into the reference when they differ. Under PEFT there is
no separate reference (the adapter-disabled base is the reference, already the in-memory model).

TRL builds and runs the reference only when `beta > 0`; a KL term in the reward needs it with `beta = 0`, so
`lent_beta` lends TRL a non-zero `beta` for exactly those calls (`needs_reference_logps` says when).
"""

from __future__ import annotations

import contextlib
import logging
import warnings

import torch

from trl_plus.engine.config import setting
from trl_plus.engine.estimators import get_estimator

logger = logging.getLogger(__name__)

# Any non-zero value makes TRL build and run the reference model; the loss never sees it.
_REFERENCE_ONLY_BETA = 1.0


def _differs(policy_state: dict, ref_state: dict) -> bool:
    return any(not torch.equal(value.to(ref_state[name].dtype), ref_state[name]) for name, value in policy_state.items())


def match_reference_to_policy(trainer, model_arg) -> bool:
    """Make `trainer.ref_model` equal to the policy as passed; True when weights were copied.

    Nothing to do when the policy was given as a path or hub id (TRL loads both from it) or there is no separate
    reference. Raises ValueError when the two models do not share parameter names (a reference of another
    architecture cannot be a starting point of this policy).
    """
    if trainer.ref_model is None or isinstance(model_arg, str):
        return False
    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        # Sharded parameters cannot be compared here; say what the reference is instead of guessing.
        warnings.warn("With DeepSpeed or FSDP the reference model is loaded from the policy's name_or_path "
                      f"({trainer.model.config._name_or_path!r}), not copied from the model object you passed: save a "
                      "model you changed in memory and pass its folder instead.", stacklevel=3)
        return False
    policy = trainer.accelerator.unwrap_model(trainer.model)
    reference = trainer.accelerator.unwrap_model(trainer.ref_model)
    policy_state, ref_state = policy.state_dict(), reference.state_dict()
    if policy_state.keys() != ref_state.keys():
        missing = sorted(set(policy_state) ^ set(ref_state))[:3]
        raise ValueError(f"The reference model loaded from {policy.config._name_or_path!r} has other parameters than "
                         f"the policy you passed (e.g. {missing}): pass the policy as a saved folder, or one whose "
                         "name_or_path is the checkpoint it was built from.")
    if not _differs(policy_state, ref_state):
        return False
    with torch.no_grad():
        reference.load_state_dict(policy_state)
    logger.info("The policy passed differs from its checkpoint on disk (%s): the reference model now starts from the "
                "policy as passed.", policy.config._name_or_path)
    return True


def needs_reference_logps(args) -> bool:
    """Whether rollouts need reference log-probs although the loss may have no KL term (KL in the reward, or an
    estimator that asks for them)."""
    spec = get_estimator(setting(args, "advantage_estimator"))
    return setting(args, "kl_in_reward_coef") > 0.0 or spec.needs_reference_logps


@contextlib.contextmanager
def lent_beta(holder, needed: bool):
    """Lend `holder.beta` (the config while TRL builds the reference model, the trainer while it computes the
    reference log-probs) a non-zero value when the reference is needed but `beta` is 0; restore 0 after."""
    borrow = needed and holder.beta == 0.0
    if borrow:
        holder.beta = _REFERENCE_ONLY_BETA
    try:
        yield
    finally:
        if borrow:
            holder.beta = 0.0
