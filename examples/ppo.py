"""PPO with a learned critic and GAE (trl_plus.PPOTrainer) with LoRA on GSM8K.

PPO: Schulman et al. 2017, "Proximal Policy Optimization Algorithms", https://huggingface.co/papers/1707.06347;
GAE: Schulman et al. 2015, https://huggingface.co/papers/1506.02438; PPO for LLMs with the KL penalty in the
reward: Ouyang et al. 2022 (InstructGPT), https://huggingface.co/papers/2203.02155.
The values are those of examples/recipes/ppo.yaml, which gives each one's source.

The critic is a second LoRA adapter on the policy's base plus a value head (one base model in memory); the run
saves the policy's adapter to the output folder and the critic to its `critic/` sub-folder.

Needs internet (Qwen/Qwen2.5-1.5B-Instruct and openai/gsm8k come from the Hugging Face Hub; `--data FILE.jsonl`
reads local GSM8K-schema rows instead) and a CUDA GPU. `--offline_smoke` (or TRL_PLUS_OFFLINE_SMOKE=1) runs one
CPU step on the tiny offline model instead, with synthetic problems unless `--data` names a file:

    python examples/ppo.py [--data gsm8k|FILE.jsonl] [--offline_smoke]
"""

from common import example_setup

from trl_plus import PPOConfig, PPOTrainer


def main(argv=None):
    model, train_dataset, reward_funcs, reward_weights, lora, settings = example_setup("ppo", __doc__, argv)
    # PPO: k1 KL penalty in the reward (kl_coef 0.01), GAE with gamma 1 and lambda 0.95 whitened over the global
    # batch, clipped value loss (0.2), a critic learning rate 10x the policy's, two PPO epochs per rollout.
    args = PPOConfig(kl_coef=0.01, kl_estimator="k1", gamma=1.0, lam=0.95, vf_coef=0.1, cliprange_value=0.2,
                     critic_learning_rate=10 * settings["learning_rate"], num_iterations=2, beta=0.0, epsilon=0.2,
                     reward_weights=reward_weights, **settings)
    trainer = PPOTrainer(model, reward_funcs, args=args, train_dataset=train_dataset, peft_config=lora)
    trainer.train()
    trainer.save_model(args.output_dir)  # the policy's LoRA adapter, and the critic in critic/
    return trainer


if __name__ == "__main__":
    main()
