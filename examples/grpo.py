"""GRPO, TRL's own GRPOTrainer (the baseline of the other examples), with LoRA on GSM8K.

GRPO: Shao et al. 2024, "DeepSeekMath", https://huggingface.co/papers/2402.03300.
The values are those of examples/recipes/grpo.yaml (the LoRA GSM8K setting that
examples/README.md describes),
which gives each one's source.

Needs internet (Qwen/Qwen2.5-1.5B-Instruct and openai/gsm8k come from the Hugging Face Hub; `--data FILE.jsonl`
reads local GSM8K-schema rows instead: one {"question", "answer"} object per line) and a CUDA GPU. `--offline_smoke` (or
TRL_PLUS_OFFLINE_SMOKE=1) runs one CPU step on the tiny offline model instead, with synthetic problems unless
`--data` names a file:

    python examples/grpo.py [--data gsm8k|FILE.jsonl] [--offline_smoke]
"""

from common import example_setup
from trl import GRPOConfig, GRPOTrainer


def main(argv=None):
    model, train_dataset, reward_funcs, reward_weights, lora, settings = example_setup("grpo", __doc__, argv)
    # GRPO as the LoRA GRPO write-up ran it (examples/README.md): k3 KL in the loss, clip 0.1, token mean per
    # completion, std-scaled advantages.
    args = GRPOConfig(beta=0.04, epsilon=0.1, loss_type="grpo", scale_rewards="group",
                      reward_weights=reward_weights, **settings)
    trainer = GRPOTrainer(model, reward_funcs, args=args, train_dataset=train_dataset, peft_config=lora)
    trainer.train()
    trainer.save_model(args.output_dir)  # the LoRA adapter
    return trainer


if __name__ == "__main__":
    main()
