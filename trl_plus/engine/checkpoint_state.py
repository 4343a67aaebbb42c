"""Per-process state a trainer adds to TRL's (e.g. the dynamic-sampling RNG), saved with every checkpoint and
restored on resume. A trainer mixes `ExtraCheckpointState` in and implements `checkpoint_state()` (None when it has
no state) and `load_checkpoint_state(state)`."""

from __future__ import annotations

import logging
import os

import torch
from accelerate.utils import gather_object
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)

# One file per checkpoint, holding every process's state.
STATE_FILE = "trl_plus_state.pt"


class ExtraCheckpointState:
    """Mixin for a `transformers.Trainer`: writes `checkpoint_state()` of every rank into `STATE_FILE`."""

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        state = self.checkpoint_state()
        if state is None:  # the same on every rank: it depends on the config only
            return
        states = gather_object([state])  # every rank's state, written once by the main one
        if self.args.should_save:
            name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            folder = os.path.join(self._get_output_dir(trial=trial), name)
            torch.save({"per_process": states}, os.path.join(folder, STATE_FILE))

    def _load_extra_state(self, checkpoint: str | None) -> None:
        path = None if checkpoint is None else os.path.join(checkpoint, STATE_FILE)
        if path is None or not os.path.isfile(path):
            return
        states = torch.load(path, weights_only=True)["per_process"]
        if len(states) != self.accelerator.num_processes:
            logger.warning(f"{path} holds the state of {len(states)} processes, but this run has "
                           f"{self.accelerator.num_processes}: the trl-plus state starts afresh.")
            return
        self.load_checkpoint_state(states[self.accelerator.process_index])

    # Transformers calls `_load_rng_state(checkpoint)` when resuming, but not with `ignore_data_skip` mid-epoch;
    # `_load_optimizer_and_scheduler(checkpoint)` runs on every resume. Loading twice is harmless (same file,
    # nothing happens in between).
    def _load_rng_state(self, checkpoint):
        super()._load_rng_state(checkpoint)
        self._load_extra_state(checkpoint)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        self._load_extra_state(checkpoint)
