"""Dr. GRPO (trl_plus.DrGRPOTrainer) with LoRA on GSM8K.

Dr. GRPO: Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective",
https://huggingface.co/papers/2503.20783.
The values are those of examples/recipes/dr_grpo.yaml (the LoRA GSM8K setting that
examples/README.md describes),
which gives each one's source.

Needs internet (Qwen/Qwen2.5-1.5B-Instruct and openai/gsm8k come from the Hugging Face Hub; `--data FILE.jsonl`
reads local GSM8K-schema rows instead: one {"question", "answer"} object per line) and a CUDA GPU. `--offline_smoke` (or
TRL_PLUS_OFFLINE_SMOKE=1) runs one CPU step on the tiny offline model instead, with synthetic problems unless
`--data` names a file:

    python examples/dr_grpo.py [--data gsm8k|FILE.jsonl] [--offline_smoke]
"""

from common import example_setup

from trl_plus import DrGRPOConfig, DrGRPOTrainer


def main(argv=None):
    model, train_dataset, reward_funcs, reward_weights, lora, settings = example_setup("dr_grpo", __doc__, argv)
    # DrGRPOConfig sets Dr. GRPO's two changes itself (scale_rewards="none": no std in the advantage;
    # loss_type="dr_grpo": a constant loss normaliser) and rejects contradicting values. KL and clip as grpo.py.
    args = DrGRPOConfig(beta=0.04, epsilon=0.1, reward_weights=reward_weights, **settings)
    trainer = DrGRPOTrainer(model, reward_funcs, args=args, train_dataset=train_dataset, peft_config=lora)
    trainer.train()
    trainer.save_model(args.output_dir)  # the LoRA adapter
    return trainer


if __name__ == "__main__":
    main()
