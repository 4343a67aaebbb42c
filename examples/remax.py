"""ReMax (trl_plus.ReMaxTrainer) with LoRA on GSM8K.

ReMax: Li et al. 2023, "ReMax: A Simple, Effective, and Efficient Reinforcement Learning Method for
Aligning Large Language Models", https://huggingface.co/papers/2310.10505.
The values are those of examples/recipes/remax.yaml (the LoRA GSM8K setting that
examples/README.md describes),
which gives each one's source.

Needs internet (Qwen/Qwen2.5-1.5B-Instruct and openai/gsm8k come from the Hugging Face Hub; `--data FILE.jsonl`
reads local GSM8K-schema rows instead: one {"question", "answer"} object per line) and a CUDA GPU. `--offline_smoke` (or
TRL_PLUS_OFFLINE_SMOKE=1) runs one CPU step on the tiny offline model instead, with synthetic problems unless
`--data` names a file:

    python examples/remax.py [--data gsm8k|FILE.jsonl] [--offline_smoke]
"""

from common import example_setup

from trl_plus import ReMaxConfig, ReMaxTrainer


def main(argv=None):
    model, train_dataset, reward_funcs, reward_weights, lora, settings = example_setup("remax", __doc__, argv, num_generations=2)
    # ReMax: the reward of one extra greedy completion per prompt is the baseline. The paper samples once per
    # prompt; 2 is the least TRL allows. No KL term (kl_coef 0, beta 0), plain REINFORCE loss.
    args = ReMaxConfig(kl_coef=0.0, beta=0.0, reward_weights=reward_weights, **settings)
    trainer = ReMaxTrainer(model, reward_funcs, args=args, train_dataset=train_dataset, peft_config=lora)
    trainer.train()
    trainer.save_model(args.output_dir)  # the LoRA adapter
    return trainer


if __name__ == "__main__":
    main()
