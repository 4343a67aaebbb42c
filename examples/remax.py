"""ReMax (trl_plus.ReMaxTrainer) with LoRA on GSM8K.

ReMax: Li et al. 2023, "ReMax: A Simple, Effective, and Efficient Reinforcement Learning Method for
Aligning Large Language Models", https://huggingface.co/papers/2310.10505.
The values are those of examples/recipes/remax.yaml (the seeds' LoRA setting),
which gives each one's source.

Needs internet (Qwen/Qwen2.5-1.5B-Instruct and openai/gsm8k come from the Hugging Face Hub; `--data FILE.jsonl`
reads local GSM8K-schema rows instead, e.g. ../shared/data/gsm8k/train.jsonl) and a CUDA GPU. `--offline-smoke` (or
TRL_PLUS_OFFLINE_SMOKE=1) runs one CPU step on the tiny offline model instead, with synthetic problems unless
`--data` names a file:

    python examples/remax.py [--data gsm8k|FILE.jsonl] [--offline-smoke]
"""

import argparse
import os
import tempfile

from peft import LoraConfig

import reward_fns
from trl_plus import ReMaxConfig, ReMaxTrainer
from trl_plus.data import load_rows, to_prompt_dataset
from trl_plus.tiny import save_tiny_model

# --offline-smoke: one CPU step of 4 completions of at most 8 tokens.
SMOKE = {"max_steps": 1, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1,
         "num_generations": 2, "max_completion_length": 8, "use_cpu": True, "bf16": False,
         "model_init_kwargs": None, "activation_checkpointing": False, "save_strategy": "no"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="gsm8k", help="'gsm8k' (hub) or a GSM8K-schema .jsonl file")
    parser.add_argument("--offline-smoke", action="store_true", help="one CPU step on the tiny offline model")
    cli = parser.parse_args(argv)
    smoke = cli.offline_smoke or os.environ.get("TRL_PLUS_OFFLINE_SMOKE") == "1"

    model, data = "Qwen/Qwen2.5-1.5B-Instruct", cli.data
    settings = {
        "output_dir": "runs/remax-qwen2.5-1.5b-gsm8k",
        "max_steps": 500, "logging_steps": 1, "save_steps": 100,
        "learning_rate": 5e-6, "lr_scheduler_type": "constant", "weight_decay": 0.01, "max_grad_norm": 0.1,
        "per_device_train_batch_size": 8, "gradient_accumulation_steps": 2,  # 8 prompts x 2 completions per step
        "num_generations": 2, "max_completion_length": 400, "temperature": 1.0,
        "bf16": True, "model_init_kwargs": {"dtype": "bfloat16"},
    }
    if smoke:
        model, data = str(save_tiny_model(tempfile.mkdtemp())), "synthetic" if data == "gsm8k" else data
        settings.update(SMOKE, output_dir=tempfile.mkdtemp())

    train_dataset = to_prompt_dataset(load_rows(data, split="train", n=16 if smoke else None))
    reward_funcs, reward_weights = reward_fns.preset("gsm8k_lm_eval")  # format, "####", text after </answer>, answer
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.2, target_modules=["q_proj", "k_proj", "v_proj"],
                      task_type="CAUSAL_LM")
    # ReMax: the reward of one extra greedy completion per prompt is the baseline. The paper samples once per
    # prompt; 2 is the least TRL allows. No KL term (kl_coef 0, beta 0), plain REINFORCE loss.
    args = ReMaxConfig(kl_coef=0.0, beta=0.0, reward_weights=reward_weights, **settings)
    trainer = ReMaxTrainer(model, reward_funcs, args=args, train_dataset=train_dataset, peft_config=lora)
    trainer.train()
    trainer.save_model(args.output_dir)  # the LoRA adapter
    return trainer


if __name__ == "__main__":
    main()
