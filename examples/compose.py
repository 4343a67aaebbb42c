"""Composed parts (trl_plus.PlusGRPOTrainer): REINFORCE++-baseline advantages with DAPO's dynamic sampling and a
k1 KL penalty in the reward, with LoRA on GSM8K; then the same run with a ten-line custom estimator.

REINFORCE++: Hu 2025, https://huggingface.co/papers/2501.03262. DAPO: Yu et al. 2025,
https://huggingface.co/papers/2503.14476. The shared settings are those of examples/recipes/*.yaml.
Command line equivalent: `trl-plus train grpo --advantage_estimator reinforce_pp_baseline --dynamic_sampling true
--kl_in_reward_coef 0.01`.

Needs internet (Qwen/Qwen2.5-1.5B-Instruct and openai/gsm8k) and a CUDA GPU. `--offline_smoke` (or
TRL_PLUS_OFFLINE_SMOKE=1) runs one CPU step on the tiny offline model instead:

    python examples/compose.py [--data gsm8k|FILE.jsonl] [--offline_smoke] [--custom]
"""

import sys

from common import example_setup

import trl_plus


@trl_plus.register_estimator("median_baseline")
def median_baseline(ctx):
    """Reward minus the median reward of its group: a baseline robust to one outlier sample."""
    groups = ctx.rewards.view(-1, ctx.args.num_generations)
    advantages = groups - groups.nanmedian(dim=1, keepdim=True).values
    return advantages.flatten().nan_to_num()[ctx.local]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    custom = "--custom" in argv
    model, train_dataset, reward_funcs, reward_weights, lora, settings = example_setup(
        "compose", __doc__, [a for a in argv if a != "--custom"])
    estimator = "median_baseline" if custom else "reinforce_pp_baseline"
    args = trl_plus.PlusGRPOConfig(advantage_estimator=estimator, dynamic_sampling=True, max_num_gen_batches=4,
                                   kl_in_reward_coef=0.0 if custom else 0.01, reward_weights=reward_weights,
                                   **settings)
    trainer = trl_plus.PlusGRPOTrainer(model, reward_funcs, args=args, train_dataset=train_dataset, peft_config=lora)
    trainer.train()
    trainer.save_model(args.output_dir)
    return trainer


if __name__ == "__main__":
    main()
