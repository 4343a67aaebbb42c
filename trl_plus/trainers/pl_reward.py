"""Plackett-Luce reward model: a reward model trained on K ranked completions per prompt instead of one pair.

The reward model's scalar outputs r(x, y_1..y_K) are the Plackett-Luce scores of the given ranking, and the loss is
its negative log-likelihood (Plackett-Luce; the InstructGPT and DPO papers use it for K-way rankings,
https://huggingface.co/papers/2203.02155, https://huggingface.co/papers/2305.18290 appendix A.3). With K = 2 it is
the Bradley-Terry loss of TRL's `RewardTrainer`.

A subclass of TRL's `RewardTrainer` that overrides only the data seams (`_prepare_dataset`, the collator, the
signature columns, shared in `ListwiseDataMixin`) and `compute_loss`; model loading, PEFT and QLoRA are TRL's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from trl import RewardConfig, RewardTrainer

from trl_plus.listwise_data import ListwiseDataMixin, ListwiseOptions, to_lists
from trl_plus.plackett_luce import plackett_luce_nll
from trl_plus.qlora import use_exact_4bit_matmul


@dataclass
class PlackettLuceRewardConfig(ListwiseOptions, RewardConfig):
    """`RewardConfig` plus `top_k`. `max_length`, `center_rewards_coefficient` and PEFT options are TRL's.

    Listwise data: `prompt`, `completions` (K >= 2) and `ranking` (indices, best first) or `scores` (higher is
    better; equal scores are tied, see `trl_plus.listwise_data`). `bf16` defaults to what the machine supports.
    """

    def __post_init__(self):
        self.check_listwise_options()
        super().__post_init__()


class PlackettLuceRewardTrainer(ListwiseDataMixin, RewardTrainer):
    """Reward-model training on listwise preferences with the Plackett-Luce loss; takes `RewardTrainer`'s arguments.

    Example:
        >>> from trl_plus import PlackettLuceRewardConfig, PlackettLuceRewardTrainer
        >>> data = Dataset.from_list([{"prompt": "2+2=", "completions": ["4", "5", "22"], "scores": [1.0, 0.0, 0.0]}])
        >>> PlackettLuceRewardTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", args=PlackettLuceRewardConfig("out"),
        ...                           train_dataset=data).train()
    """

    _tag_names: ClassVar[list[str]] = ["trl", "reward-trainer", "trl-plus", "plackett-luce"]
    _name = "Plackett-Luce Reward"

    def __init__(self, model, args: PlackettLuceRewardConfig | None = None, data_collator=None, *a, **kw):
        if args is None:
            args = PlackettLuceRewardConfig("pl-reward")
        elif not isinstance(args, PlackettLuceRewardConfig):
            raise TypeError(f"PlackettLuceRewardTrainer needs a PlackettLuceRewardConfig, got {type(args).__name__}.")
        super().__init__(model, args, data_collator, *a, **kw)
        use_exact_4bit_matmul(self.model)  # see trl_plus.qlora: no bf16 CPU repack mid-training
        if data_collator is None:  # TRL built its pair collator; listwise batches need ours
            self._use_listwise_collator(self.processing_class.pad_token_id)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
        list_mask = inputs["list_mask"]
        rewards = to_lists(outputs.logits.squeeze(-1), list_mask)  # (B, K_max), best first
        loss = plackett_luce_nll(rewards, list_mask, self.args.top_k, inputs["levels"]).mean()
        if self.args.center_rewards_coefficient is not None:
            # TRL's centring term mean((r_chosen + r_rejected)^2), with the sum taken over each row's list
            loss = loss + self.args.center_rewards_coefficient * rewards.sum(-1).pow(2).mean()
        self._log_listwise_metrics(mode, rewards.detach(), list_mask, inputs)
        return (loss, outputs) if return_outputs else loss

    def _log_listwise_metrics(self, mode, rewards, list_mask, inputs):
        """RewardTrainer's metric names, read listwise: accuracy = the top-ranked completion scores highest,
        margin = top-ranked minus bottom-ranked reward."""
        gather = self.accelerator.gather_for_metrics
        if mode == "train":
            self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item() // self._tp_size
        metrics = self._metrics[mode]
        metrics["num_tokens"] = [self._total_train_tokens]
        real = gather(rewards[list_mask])
        metrics["min_reward"].append(real.min().item())
        metrics["mean_reward"].append(real.mean().item())
        metrics["max_reward"].append(real.max().item())
        top1 = rewards.masked_fill(~list_mask, float("-inf")).argmax(-1) == 0
        metrics["accuracy"].append(gather(top1.float()).mean().item())
        worst = rewards.gather(-1, list_mask.sum(-1, keepdim=True) - 1).squeeze(-1)
        metrics["margin"].append(gather(rewards[:, 0] - worst).mean().item())
        metrics["list_size"].append(gather(list_mask.sum(-1).float()).mean().item())
