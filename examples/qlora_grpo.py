"""QLoRA recipe: GRPO-family training of Qwen2.5-1.5B-Instruct on GSM8K with a 4-bit NF4 base + LoRA r=16.

Needs internet (the model and `openai/gsm8k` come from the Hugging Face Hub) and a CUDA GPU; the
4-bit base of a 1.5B model takes about 1 GB, so a 12-24 GB consumer card is enough. Run it with

    python examples/qlora_grpo.py --algo dr_grpo --max_steps 500 --output_dir qlora-dr-grpo

Any trl-plus algorithm works (`--algo`: dr_grpo, dapo, reinforce_pp, reinforce_pp_baseline, remax,
rahf, ps_grpo, or grpo for TRL's own). The same run from the command line:

    trl-plus train dr_grpo --model Qwen/Qwen2.5-1.5B-Instruct --dataset gsm8k \\
        --load_in_4bit --use_peft --lora_r 16 --lora_alpha 32 --lora_target_modules all-linear \\
        --dtype bfloat16 --bf16 --max_steps 500 --output_dir qlora-dr-grpo

What happens, step by step:
1. TRL's `ModelConfig` describes the model: 4-bit NF4 (`load_in_4bit`, `bnb_4bit_quant_type="nf4"`),
   bf16 compute (`dtype`), and LoRA (`use_peft`, `lora_r`, `lora_alpha`, `lora_dropout`,
   `lora_target_modules`).
2. `trl_plus.qlora.model_kwargs_and_peft` turns it into `model_init_kwargs` (with the
   `BitsAndBytesConfig` from `trl.get_quantization_config`) and a `LoraConfig` (from
   `trl.get_peft_config`).
3. The trainer gets the model as a hub id, so TRL loads it already quantised, wraps it with the
   LoRA adapter and trains only the adapter. The reference policy (for a KL term, e.g.
   `--beta 0.04`, or REINFORCE++'s KL in the reward) is the same model with the adapter disabled:
   no second copy is loaded.
4. `trainer.save_model` writes only the adapter (`adapter_config.json`, `adapter_model.safetensors`).
   Judge it with lm-eval's GSM8K through trl-plus:

       trl-plus eval qlora-dr-grpo --tasks gsm8k,gsm8k_reasoning --load_in_4bit

   or load it yourself:

       base = AutoModelForCausalLM.from_pretrained("Qwen/Qwen2.5-1.5B-Instruct", **model_init_kwargs)
       model = peft.PeftModel.from_pretrained(base, "qlora-dr-grpo")
"""

from __future__ import annotations

import argparse

MODEL = "Qwen/Qwen2.5-1.5B-Instruct"


def main(argv: list[str] | None = None) -> None:
    from trl_plus.algorithms import ALGORITHMS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algo", default="dr_grpo", choices=sorted(ALGORITHMS))
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--output_dir", "--output-dir", default="qlora-grpo-out")
    parser.add_argument("--max_steps", "--max-steps", type=int, default=500)
    parser.add_argument("--num_samples", "--num-samples", type=int, default=None, help="use only the first N GSM8K train rows")
    cli = parser.parse_args(argv)

    from trl import ModelConfig

    import reward_fns
    from trl_plus.algorithms import build_trainer, get_algorithm
    from trl_plus.data import SYSTEM_PROMPT, load_rows, to_prompt_dataset
    from trl_plus.qlora import model_kwargs_and_peft

    # 1-2. 4-bit NF4 base with bf16 compute, LoRA r=16 on every linear layer.
    model_config = ModelConfig(
        model_name_or_path=cli.model,
        dtype="bfloat16",
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        use_bnb_nested_quant=False,  # True saves ~0.4 bit per weight more, at some speed cost
        use_peft=True,
        lora_r=16,
        lora_alpha=32,
        lora_dropout=0.05,
        lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    model_init_kwargs, peft_config = model_kwargs_and_peft(model_config)

    # GSM8K in the training answer format (<reasoning>...</reasoning><answer>#### N</answer>), as chat prompts.
    rows = load_rows("gsm8k", split="train", n=cli.num_samples)
    train_dataset = to_prompt_dataset(rows, system_prompt=SYSTEM_PROMPT, conversational=True)
    # The "gsm8k" preset: format reward (0.2 per tag) + correctness against the `answer` column.
    reward_funcs, reward_weights = reward_fns.preset("gsm8k")

    # 3. The algorithm's own config: its defining defaults plus ordinary GRPOConfig fields.
    algo = get_algorithm(cli.algo)
    config_cls, _ = algo.classes()
    args = config_cls(
        output_dir=cli.output_dir,
        model_init_kwargs=model_init_kwargs,
        reward_weights=reward_weights,
        bf16=True,
        gradient_checkpointing=True,  # TRL's default; keeps activations small
        learning_rate=2e-5,  # LoRA takes a larger learning rate than full fine-tuning (~1e-6)
        lr_scheduler_type="cosine",
        warmup_steps=0.05,  # a fraction of max_steps
        per_device_train_batch_size=8,
        gradient_accumulation_steps=2,
        num_generations=8,
        max_completion_length=256,
        temperature=0.9,
        max_steps=cli.max_steps,
        logging_steps=5,
        save_steps=100,
        report_to=[],
        **algo.defaults,
    )
    trainer = build_trainer(cli.algo, model=cli.model, reward_funcs=reward_funcs, args=args,
                            train_dataset=train_dataset, peft_config=peft_config)
    trainer.model.print_trainable_parameters()
    trainer.train()

    # 4. Only the adapter is saved; it reloads onto the 4-bit base with peft.PeftModel.from_pretrained.
    trainer.save_model(cli.output_dir)
    print(f"adapter saved to {cli.output_dir}; evaluate with: "
          f"trl-plus eval {cli.output_dir} --tasks gsm8k,gsm8k_reasoning --load_in_4bit")


if __name__ == "__main__":
    main()
