"""Listwise (Plackett-Luce) DPO: DPO over K ranked completions per prompt instead of one pair.

The implicit reward of completion y is s(y) = beta * log(pi_theta(y|x) / pi_ref(y|x)) as in DPO
(https://huggingface.co/papers/2305.18290); the loss is the Plackett-Luce negative log-likelihood of the given
ranking of the K completions under these scores (the DPO paper's appendix A.3, eq. 18). With K = 2 it is TRL's
sigmoid DPO loss.

A subclass of TRL's `DPOTrainer` that overrides only the data seams (`_prepare_dataset`, the collator, the
signature columns, shared in `ListwiseDataMixin`) and the loss (`_compute_loss`). The reference log-probabilities
come from TRL's own `compute_ref_log_probs`, so the reference model, PEFT (adapters disabled as the reference) and QLoRA behave as in
`DPOTrainer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from trl import DPOConfig, DPOTrainer

from trl_plus.listwise_data import ListwiseDataMixin, ListwiseOptions, to_lists
from trl_plus.plackett_luce import plackett_luce_nll
from trl_plus.qlora import use_exact_4bit_matmul

SEQUENCE_KEYS = ("input_ids", "attention_mask", "completion_mask")


@dataclass
class ListwiseDPOConfig(ListwiseOptions, DPOConfig):
    """`DPOConfig` plus `top_k`. `beta`, `max_length`, reference-model and PEFT options are TRL's.

    Listwise data: `prompt`, `completions` (K >= 2) and `ranking` (indices, best first) or `scores` (higher is
    better; equal scores are tied, see `trl_plus.listwise_data`). `bf16` defaults to what the machine supports.
    """

    def __post_init__(self):
        self.check_listwise_options()
        loss = [self.loss_type] if isinstance(self.loss_type, str) else list(self.loss_type)
        unsupported = {
            "loss_type": loss != ["sigmoid"],  # the Plackett-Luce loss is the listwise sigmoid loss
            "ld_alpha": self.ld_alpha is not None,
            "f_divergence_type": self.f_divergence_type != "reverse_kl",
            "use_weighting": self.use_weighting,
            "precompute_ref_log_probs": self.precompute_ref_log_probs,
        }
        bad = [name for name, is_bad in unsupported.items() if is_bad]
        if bad:
            raise ValueError(f"ListwiseDPOConfig does not support {', '.join(bad)}: leave them at DPOConfig's "
                             "defaults (the loss is the Plackett-Luce form of sigmoid DPO, and the reference model "
                             "runs on every batch).")
        super().__post_init__()


class ListwiseDPOTrainer(ListwiseDataMixin, DPOTrainer):
    """DPO on listwise preferences with the Plackett-Luce loss; takes `DPOTrainer`'s arguments.

    Example:
        >>> from trl_plus import ListwiseDPOConfig, ListwiseDPOTrainer
        >>> data = Dataset.from_list([{"prompt": "2+2=", "completions": ["4", "5", "22"], "ranking": [0, 2, 1]}])
        >>> ListwiseDPOTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", args=ListwiseDPOConfig("out"),
        ...                    train_dataset=data).train()
    """

    _tag_names: ClassVar[list[str]] = ["trl", "dpo", "trl-plus", "listwise-dpo"]
    listwise_columns = ("prompt_ids", "completion_ids", "levels")
    _name = "Listwise DPO"

    def __init__(self, model, ref_model=None, args: ListwiseDPOConfig | None = None, data_collator=None, *a, **kw):
        if args is None:
            args = ListwiseDPOConfig("listwise-dpo")
        elif not isinstance(args, ListwiseDPOConfig):
            raise TypeError(f"ListwiseDPOTrainer needs a ListwiseDPOConfig, got {type(args).__name__}.")
        super().__init__(model, ref_model, args, data_collator, *a, **kw)
        use_exact_4bit_matmul(self.model, self.ref_model)  # see trl_plus.qlora: no bf16 CPU repack mid-training
        if data_collator is None:  # TRL built its pair collator; listwise batches need ours
            self._use_listwise_collator(self._tokenizer.pad_token_id, args.max_length)


    def _sequence_logps(self, model, inputs):
        """Summed completion log-probs `(N,)` of the policy, and its fused-head outputs (TRL's forward)."""
        labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=labels,
                        use_cache=False, fused_lm_head=True)
        seq_len = inputs["completion_mask"].size(1) - 1
        return outputs.log_probs[:, -seq_len:].sum(dim=1), outputs

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        sequences = {key: inputs[key] for key in SEQUENCE_KEYS}
        logps, outputs = self._sequence_logps(model, sequences)
        # TRL's reference pass (ref model, or the PEFT model with its adapter disabled); it returns two halves
        ref = self.model if self.ref_model is None else self.ref_model
        ref_logps = torch.cat(self.compute_ref_log_probs(ref, sequences))
        list_mask = inputs["list_mask"]
        scores = to_lists(self.beta * (logps - ref_logps.to(logps.device)), list_mask)  # (B, K_max), best first
        loss = plackett_luce_nll(scores, list_mask, self.args.top_k, inputs["levels"]).mean()
        self._log_listwise_metrics(mode, scores.detach(), list_mask, to_lists(logps.detach(), list_mask), inputs)
        if return_outputs:
            return loss, outputs
        return loss

    def _log_listwise_metrics(self, mode, scores, list_mask, logps, inputs):
        """DPO's metric names, read listwise: chosen = the top-ranked completion, rejected = the bottom one."""
        gather = self.accelerator.gather_for_metrics
        last = list_mask.sum(-1, keepdim=True) - 1
        best, worst = scores[:, 0], scores.gather(-1, last).squeeze(-1)
        top1 = scores.masked_fill(~list_mask, float("-inf")).argmax(-1) == 0
        if mode == "train":
            self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item() // self._tp_size
        metrics = self._metrics[mode]
        metrics["num_tokens"] = [self._total_train_tokens]
        metrics["rewards/chosen"].append(gather(best).mean().item())
        metrics["rewards/rejected"].append(gather(worst).mean().item())
        metrics["rewards/accuracies"].append(gather(top1.float()).mean().item())  # top-ranked scores highest
        metrics["rewards/margins"].append(gather(best - worst).mean().item())
        metrics["logps/chosen"].append(gather(logps[:, 0]).mean().item())
        metrics["logps/rejected"].append(gather(logps.gather(-1, last).squeeze(-1)).mean().item())
        metrics["list_size"].append(gather(list_mask.sum(-1).float()).mean().item())
