"""`LmEvalCallback`: lm-eval on the live model during training, logged like the trainer's own metrics."""

from __future__ import annotations

import logging

from transformers import Trainer, TrainerCallback

from eval.harness import evaluate

logger = logging.getLogger(__name__)


class LmEvalCallback(TrainerCallback):
    """Evaluate the model being trained with lm-eval and log `lm_eval/<task>/<metric>,<filter>`.

    Args:
        trainer: the trainer whose model is evaluated and whose logs receive the metrics, as TRL's own
            callbacks take it (`trainer.add_callback(LmEvalCallback(trainer, "gsm8k_reasoning"))`).
        tasks: task names (list or comma-separated), e.g. `"gsm8k_reasoning"`.
        eval_steps: evaluate every `eval_steps` optimizer steps (None: never by step count).
        on_save: evaluate whenever a checkpoint is saved; when the save comes from the step schedule the
            metrics are logged before the checkpoint's `trainer_state.json` is written.
        on_train_end: evaluate once training ends.
        limit, data_dir: as in `eval.evaluate`.
        **evaluate_kwargs: passed to `eval.evaluate` (`batch_size`, `max_gen_toks`, `apply_chat_template`, ...).

    Metrics are logged through `transformers.Trainer.log` (the base implementation, so a subclass's `log`
    cannot fold its own running averages into them): they are appended to `trainer.state.log_history`
    (hence `trainer_state.json`) and passed to every `report_to` integration. Only the main process
    evaluates; the others wait at a barrier. A failing evaluation is logged with its message and training
    goes on; without `data_dir` and without a network it fails in seconds (the Hub is probed once, no retries).
    Not supported with FSDP or DeepSpeed ZeRO-3, whose sharded weights one process cannot run alone.
    """

    def __init__(self, trainer: Trainer, tasks=None, eval_steps: int | None = None, on_save: bool = False,
                 on_train_end: bool = True, limit: float | None = None, data_dir=None, prefix: str = "lm_eval",
                 **evaluate_kwargs):
        if trainer is None or isinstance(trainer, (str, list, tuple)):
            raise TypeError(f"LmEvalCallback takes the trainer first, got {trainer!r}: create the trainer, then "
                            "trainer.add_callback(LmEvalCallback(trainer, tasks, ...)).")
        if not tasks:
            raise ValueError("LmEvalCallback needs tasks, e.g. LmEvalCallback(trainer, 'gsm8k_reasoning').")
        if eval_steps is not None and eval_steps < 1:
            raise ValueError(f"eval_steps must be a positive integer or None, got {eval_steps}.")
        self.tasks = tasks
        self.eval_steps = eval_steps
        self.eval_on_save = on_save
        self.eval_on_train_end = on_train_end
        self.limit = limit
        self.data_dir = data_dir
        self.trainer = trainer
        self.prefix = prefix
        self.evaluate_kwargs = evaluate_kwargs
        self.last_metrics: dict[str, float] = {}
        self._last_step: int | None = None

    # ------------------------------------------------------------------ events
    def on_step_end(self, args, state, control, **kwargs):
        by_steps = self.eval_steps is not None and state.global_step % self.eval_steps == 0
        if by_steps or (self.eval_on_save and control.should_save):
            self._evaluate_and_log(args, state, control, **kwargs)

    def on_save(self, args, state, control, **kwargs):
        if self.eval_on_save:
            self._evaluate_and_log(args, state, control, **kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        if self.eval_on_train_end:
            self._evaluate_and_log(args, state, control, **kwargs)

    # ------------------------------------------------------------------ work
    def _evaluate_and_log(self, args, state, control, model=None, processing_class=None, tokenizer=None, **_):
        if self._last_step == state.global_step:  # e.g. eval_steps and on_train_end at the last step
            return
        self._last_step = state.global_step
        from accelerate import PartialState

        ps = PartialState()
        if ps.num_processes > 1 and _sharded(args):
            logger.error("LmEvalCallback: skipped; evaluating on one process is not possible with FSDP or "
                         "DeepSpeed ZeRO-3. Evaluate saved checkpoints with `trl-plus eval` instead.")
            return
        metrics: dict[str, float] = {}
        if ps.is_main_process:
            metrics = self._run(model, processing_class if processing_class is not None else tokenizer,
                                state.global_step)
        ps.wait_for_everyone()
        if metrics:
            self.last_metrics = metrics
            self._log(metrics, state, control)

    def _run(self, model, processing_class, step: int) -> dict[str, float]:
        tokenizer = getattr(processing_class, "tokenizer", None) if _is_processor(processing_class) else processing_class
        was_training = model.training if model is not None else False
        try:
            results = evaluate(model, self.tasks, limit=self.limit, data_dir=self.data_dir, tokenizer=tokenizer,
                               **self.evaluate_kwargs)
        except Exception as e:  # noqa: BLE001 - an evaluation problem must not end a training run
            logger.error("LmEvalCallback: lm-eval evaluation at step %d failed, training continues: %s: %s",
                         step, type(e).__name__, e)
            return {}
        finally:
            if model is not None:
                model.train(was_training)
        return {f"{self.prefix}/{task}/{key}": float(value)
                for task, values in results["metrics"].items() for key, value in values.items()
                if isinstance(value, (int, float)) and not isinstance(value, bool)}

    def _log(self, metrics: dict[str, float], state, control) -> None:
        # Trainer.log clears control.should_log; keep it so the trainer's own log for this step still happens.
        should_log = control.should_log
        Trainer.log(self.trainer, dict(metrics))
        control.should_log = self.trainer.control.should_log = should_log


def _is_processor(obj) -> bool:
    from transformers import ProcessorMixin

    return isinstance(obj, ProcessorMixin)


def _sharded(args) -> bool:
    from transformers.integrations import is_deepspeed_zero3_enabled

    return bool(getattr(args, "fsdp", None)) or is_deepspeed_zero3_enabled()
