"""What every example shares: its command line, the LoRA GRPO setting on GSM8K (examples/README.md), and
the offline smoke mode. Each value's source is given in examples/recipes/*.yaml.

Online, an example trains Qwen/Qwen2.5-1.5B-Instruct on openai/gsm8k (both from the Hugging Face
Hub; `--data FILE.jsonl` reads local GSM8K-schema rows instead). `--offline_smoke` (or
TRL_PLUS_OFFLINE_SMOKE=1) runs one CPU step on the tiny offline model instead, with synthetic problems
unless `--data` names a file: a check, in seconds after the imports, that the example's trainer takes a
real gradient step with its settings.
"""

import argparse
import os
import tempfile

from peft import LoraConfig

import reward_fns
from trl_plus.data import load_rows, to_prompt_dataset
from trl_plus.tiny import save_tiny_model

MODEL = "Qwen/Qwen2.5-1.5B-Instruct"

# --offline_smoke: one CPU step of 4 completions of at most 8 tokens.
SMOKE = {"max_steps": 1, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1,
         "max_completion_length": 8, "use_cpu": True, "bf16": False, "dataloader_pin_memory": False,
         "model_init_kwargs": None, "activation_checkpointing": False, "save_strategy": "no",
         "learning_rate": 1e-2}
# The untrained tiny model never writes the answer format, so the GSM8K rewards are 0 for every completion and a
# group-relative step would have no gradient (and DAPO would drop every group). The smoke run adds `smoke_reward`,
# which differs between any two completions, and lets DAPO filter on the total reward instead of correctness.
SMOKE_OVERRIDES = {"dapo": {"dynamic_sampling_metric": None, "max_num_gen_batches": 2}}


@reward_fns.text_reward
def smoke_reward(text):
    """Mean character code / 128: varies between completions of an untrained model (smoke runs only)."""
    return sum(map(ord, text)) / (128 * max(1, len(text)))


def example_setup(name: str, doc: str, argv=None, num_generations: int = 8):
    """Parse the example's options; return (model, train_dataset, reward_funcs, reward_weights, lora, settings)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data", default="gsm8k", help="'gsm8k' (hub) or a GSM8K-schema .jsonl file")
    parser.add_argument("--offline_smoke", "--offline-smoke", action="store_true",
                        help="one CPU step on the tiny offline model")
    cli = parser.parse_args(argv)
    smoke = cli.offline_smoke or os.environ.get("TRL_PLUS_OFFLINE_SMOKE") == "1"

    model, data = MODEL, cli.data
    settings = {
        "output_dir": f"runs/{name}-qwen2.5-1.5b-gsm8k",
        "max_steps": 500, "logging_steps": 1, "save_steps": 100,
        "learning_rate": 5e-6, "lr_scheduler_type": "constant", "weight_decay": 0.01, "max_grad_norm": 0.1,
        # 16 completions per step: 8 per device x 2 accumulation steps
        "per_device_train_batch_size": 8, "gradient_accumulation_steps": 2,
        "num_generations": num_generations, "max_completion_length": 400, "temperature": 1.0,
        "bf16": True, "model_init_kwargs": {"dtype": "bfloat16"},
    }
    reward_funcs, reward_weights = reward_fns.preset("gsm8k_lm_eval")  # format, "####", text after </answer>, answer
    if smoke:
        model, data = str(save_tiny_model(tempfile.mkdtemp())), "synthetic" if data == "gsm8k" else data
        settings.update(SMOKE, output_dir=tempfile.mkdtemp(), num_generations=min(4, num_generations),
                        **SMOKE_OVERRIDES.get(name, {}))
        reward_funcs, reward_weights = [*reward_funcs, smoke_reward], [*reward_weights, 1.0]

    train_dataset = to_prompt_dataset(load_rows(data, split="train", n=16 if smoke else None))
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.2, target_modules=["q_proj", "k_proj", "v_proj"],
                      task_type="CAUSAL_LM")
    return model, train_dataset, reward_funcs, reward_weights, lora, settings
