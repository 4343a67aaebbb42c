"""REINFORCE++ (trl_plus.ReinforcePlusPlusTrainer) with LoRA on GSM8K.

REINFORCE++: Hu 2025, "REINFORCE++: An Efficient RLHF Algorithm with Robustness to Both Prompt and
Reward Models", https://huggingface.co/papers/2501.03262.
The values are those of examples/recipes/reinforce_pp.yaml (the LoRA GSM8K setting that
examples/README.md describes),
which gives each one's source.

Needs internet (Qwen/Qwen2.5-1.5B-Instruct and openai/gsm8k come from the Hugging Face Hub; `--data FILE.jsonl`
reads local GSM8K-schema rows instead: one {"question", "answer"} object per line) and a CUDA GPU. `--offline_smoke` (or
TRL_PLUS_OFFLINE_SMOKE=1) runs one CPU step on the tiny offline model instead, with synthetic problems unless
`--data` names a file:

    python examples/reinforce_pp.py [--data gsm8k|FILE.jsonl] [--offline_smoke]
"""

from common import example_setup

from trl_plus import ReinforcePlusPlusConfig, ReinforcePlusPlusTrainer


def main(argv=None):
    model, train_dataset, reward_funcs, reward_weights, lora, settings = example_setup("reinforce_pp", __doc__, argv)
    # REINFORCE++ (docs/algorithms.md): k1 KL penalty in the *reward* (kl_coef 0.01), undiscounted returns whitened
    # over the global batch, rewards clipped to +-10, PPO clip 0.2, no KL in the loss.
    args = ReinforcePlusPlusConfig(kl_coef=0.01, kl_estimator="k1", gamma=1.0, reward_clip=10.0, beta=0.0,
                                   epsilon=0.2, reward_weights=reward_weights, **settings)
    trainer = ReinforcePlusPlusTrainer(model, reward_funcs, args=args, train_dataset=train_dataset, peft_config=lora)
    trainer.train()
    trainer.save_model(args.output_dir)  # the LoRA adapter
    return trainer


if __name__ == "__main__":
    main()
