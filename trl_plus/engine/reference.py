"""The reference policy is the policy as it was handed to the trainer.

TRL's `GRPOTrainer` builds its reference model (full fine-tuning with `beta > 0`, and here whenever the KL sits in
the reward) by loading `model.config._name_or_path` from disk. When the policy is passed as a model object that
was changed in memory since it was loaded (the usual SFT-then-RL script: `SFTTrainer(...).train()`, then
`trainer.model` into an RL trainer), that checkpoint is the model *before* SFT. Every KL term then measures the
distance to the wrong model: on the demo task a per-token k1 of about 4.6 from the first step, which pushed PPO
and REINFORCE++ to ever shorter completions until accuracy reached 0.

`match_reference_to_policy` copies the policy's weights into the reference when they differ. Under PEFT there is
no separate reference (the adapter-disabled base is the reference, already the in-memory model).
"""

from __future__ import annotations

import logging
import warnings

import torch

logger = logging.getLogger(__name__)


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
