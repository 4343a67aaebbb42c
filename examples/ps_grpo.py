"""Process-supervised GRPO (trl_plus.ProcessGRPOTrainer) with LoRA on GSM8K.

Process supervision: Shao et al. 2024, "DeepSeekMath", section 4.1.3,
https://huggingface.co/papers/2402.03300.
The values are those of examples/recipes/ps_grpo.yaml (the LoRA GSM8K setting that
examples/README.md describes),
which gives each one's source.

Needs internet (Qwen/Qwen2.5-1.5B-Instruct and openai/gsm8k come from the Hugging Face Hub; `--data FILE.jsonl`
reads local GSM8K-schema rows instead: one {"question", "answer"} object per line) and a CUDA GPU. `--offline_smoke` (or
TRL_PLUS_OFFLINE_SMOKE=1) runs one CPU step on the tiny offline model instead, with synthetic problems unless
`--data` names a file:

    python examples/ps_grpo.py [--data gsm8k|FILE.jsonl] [--offline_smoke]
"""

from common import example_setup

from trl_plus import ProcessGRPOConfig, ProcessGRPOTrainer


def main(argv=None):
    model, train_dataset, reward_funcs, reward_weights, lora, settings = example_setup("ps_grpo", __doc__, argv)
    # Step rewards: `arithmetic_steps` scores each line of the answer (+1 right arithmetic, -1 wrong, 0 none).
    # The outcome rewards above enter as one extra final step (outcome_weight 1), normalised apart from the steps.
    args = ProcessGRPOConfig(outcome_weight=1.0, beta=0.04, epsilon=0.1, loss_type="grpo",
                             reward_weights=reward_weights, **settings)
    trainer = ProcessGRPOTrainer(model, reward_funcs, args=args, train_dataset=train_dataset, peft_config=lora,
                                 process_reward_funcs=["arithmetic_steps"])
    trainer.train()
    trainer.save_model(args.output_dir)  # the LoRA adapter
    return trainer


if __name__ == "__main__":
    main()
