"""Listwise (Plackett-Luce) DPO (trl_plus.ListwiseDPOTrainer) with LoRA on GSM8K, on K = 4 ranked samples.

Plackett-Luce DPO: the DPO paper's listwise generalisation (appendix A.3), https://huggingface.co/papers/2305.18290.
The training values are those of examples/recipes/listwise_dpo.yaml. The ranked data is built here from the policy
itself: `trl_plus.build_listwise_dataset` samples K completions per prompt, scores them with the GSM8K rewards and
ranks them (equal scores are tied); prompts whose K scores are all equal carry no preference and are dropped.

Needs internet (Qwen/Qwen2.5-1.5B-Instruct and openai/gsm8k come from the Hugging Face Hub; `--data FILE.jsonl`
reads local GSM8K-schema rows instead) and a CUDA GPU. `--offline_smoke` (or TRL_PLUS_OFFLINE_SMOKE=1) runs one CPU
step on the tiny offline model instead, with synthetic problems unless `--data` names a file:

    python examples/listwise_dpo.py [--data gsm8k|FILE.jsonl] [--prompts N] [--offline_smoke]
"""

import argparse
import os
import tempfile

from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer

import reward_fns
from trl_plus import ListwiseDPOConfig, ListwiseDPOTrainer, build_listwise_dataset
from trl_plus.data import load_rows, to_prompt_dataset
from trl_plus.tiny import save_tiny_model

MODEL = "Qwen/Qwen2.5-1.5B-Instruct"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="gsm8k", help="'gsm8k' (hub) or a GSM8K-schema .jsonl file")
    parser.add_argument("--prompts", type=int, default=2000, help="prompts to sample K = 4 completions for")
    parser.add_argument("--offline_smoke", "--offline-smoke", action="store_true",
                        help="one CPU step on the tiny offline model")
    cli = parser.parse_args(argv)
    smoke = cli.offline_smoke or os.environ.get("TRL_PLUS_OFFLINE_SMOKE") == "1"

    model_name, data = MODEL, cli.data
    settings = {"output_dir": "runs/listwise-dpo-qwen2.5-1.5b-gsm8k", "beta": 0.1, "learning_rate": 1e-6,
                "per_device_train_batch_size": 4, "gradient_accumulation_steps": 4, "num_train_epochs": 1,
                "max_length": 1024, "logging_steps": 10, "save_steps": 200, "bf16": True}
    sampling = {"k": 4, "max_new_tokens": 400, "drop_all_tied": True}
    if smoke:
        model_name, data = str(save_tiny_model(tempfile.mkdtemp())), "synthetic" if data == "gsm8k" else data
        settings.update(output_dir=tempfile.mkdtemp(), max_steps=1, per_device_train_batch_size=2,
                        gradient_accumulation_steps=1, use_cpu=True, bf16=False, activation_checkpointing=False,
                        save_strategy="no")
        sampling.update(max_new_tokens=8, drop_all_tied=False)  # an untrained model ties often: keep the ties

    tokenizer = AutoTokenizer.from_pretrained(model_name)
    policy = AutoModelForCausalLM.from_pretrained(model_name, dtype="auto")
    prompts = to_prompt_dataset(load_rows(data, split="train", n=4 if smoke else cli.prompts))
    reward_funcs, reward_weights = reward_fns.preset("gsm8k")  # format + correctness
    ranked = build_listwise_dataset(policy, prompts, reward_funcs, tokenizer=tokenizer, reward_weights=reward_weights,
                                    **sampling)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj"],
                      task_type="CAUSAL_LM")
    # the policy is given as a model: its reference is the same model with the LoRA adapter disabled
    trainer = ListwiseDPOTrainer(policy, args=ListwiseDPOConfig(**settings), train_dataset=ranked,
                                 processing_class=tokenizer, peft_config=lora)
    trainer.train()
    trainer.save_model(trainer.args.output_dir)  # the LoRA adapter
    return trainer


if __name__ == "__main__":
    main()
