"""DAPO (trl_plus.DAPOTrainer) with LoRA on GSM8K.

DAPO: Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System at Scale",
https://huggingface.co/papers/2503.14476.
The values are those of examples/recipes/dapo.yaml (the LoRA GSM8K setting that
examples/README.md describes),
which gives each one's source.

Needs internet (Qwen/Qwen2.5-1.5B-Instruct and openai/gsm8k come from the Hugging Face Hub; `--data FILE.jsonl`
reads local GSM8K-schema rows instead: one {"question", "answer"} object per line) and a CUDA GPU. `--offline_smoke` (or
TRL_PLUS_OFFLINE_SMOKE=1) runs one CPU step on the tiny offline model instead, with synthetic problems unless
`--data` names a file:

    python examples/dapo.py [--data gsm8k|FILE.jsonl] [--offline_smoke]
"""

from common import example_setup

from trl_plus import DAPOConfig, DAPOTrainer


def main(argv=None):
    model, train_dataset, reward_funcs, reward_weights, lora, settings = example_setup("dapo", __doc__, argv)
    # DAPOConfig's defaults are DAPO's: clip-higher (0.2 / 0.28), token-level loss, no KL, dynamic sampling with
    # at most 10 generation rounds. Groups are kept when their *correctness* differs; overlong shaping uses a
    # buffer of a fifth of max_completion_length (the paper's 4096 of 20480).
    own = {"dynamic_sampling_metric": "gsm8k_correctness", "overlong_buffer_len": settings["max_completion_length"] // 5}
    args = DAPOConfig(reward_weights=reward_weights, **{**own, **settings})  # the smoke mode's settings win
    trainer = DAPOTrainer(model, reward_funcs, args=args, train_dataset=train_dataset, peft_config=lora)
    trainer.train()
    trainer.save_model(args.output_dir)  # the LoRA adapter
    return trainer


if __name__ == "__main__":
    main()
