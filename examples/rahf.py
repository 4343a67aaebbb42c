"""RAHF / RAFT reward-ranked fine-tuning (trl_plus.RAHFTrainer) with LoRA on GSM8K.

RAFT: Dong et al. 2023, "RAFT: Reward rAnked FineTuning for Generative Foundation Model Alignment",
https://huggingface.co/papers/2304.06767.
The values are those of examples/recipes/rahf.yaml (the LoRA GSM8K setting that
examples/README.md describes),
which gives each one's source.

Needs internet (Qwen/Qwen2.5-1.5B-Instruct and openai/gsm8k come from the Hugging Face Hub; `--data FILE.jsonl`
reads local GSM8K-schema rows instead: one {"question", "answer"} object per line) and a CUDA GPU. `--offline_smoke` (or
TRL_PLUS_OFFLINE_SMOKE=1) runs one CPU step on the tiny offline model instead, with synthetic problems unless
`--data` names a file:

    python examples/rahf.py [--data gsm8k|FILE.jsonl] [--offline_smoke]
"""

from common import example_setup

from trl_plus import RAHFConfig, RAHFTrainer


def main(argv=None):
    model, train_dataset, reward_funcs, reward_weights, lora, settings = example_setup("rahf", __doc__, argv)
    # RAHF: sample K = 8 answers per prompt, keep the best one if it is correct (reward >= 1.5; a wrong answer
    # scores at most 1.0), and train on the kept answers with the SFT loss. No reference model (beta 0).
    args = RAHFConfig(selection="best_per_prompt", min_reward=1.5, beta=0.0, reward_weights=reward_weights,
                      **settings)
    trainer = RAHFTrainer(model, reward_funcs, args=args, train_dataset=train_dataset, peft_config=lora)
    trainer.train()
    trainer.save_model(args.output_dir)  # the LoRA adapter
    return trainer


if __name__ == "__main__":
    main()
