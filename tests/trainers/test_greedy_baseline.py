"""ReMax's greedy baseline is decoded in eval mode (deterministic with dropout) and the mode is restored."""

import torch

from trl_plus import ReMaxConfig, ReMaxTrainer


def digits(completions, **kwargs):
    return [float(sum(ch.isdigit() for ch in c)) for c in completions]


def test_greedy_rollout_runs_in_eval_mode_and_restores_train_mode(tiny_model_dir, addition_dataset, fast_args):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attention_dropout=0.5)
    args = ReMaxConfig(**fast_args(num_generations=2))
    trainer = ReMaxTrainer(model=model, reward_funcs=digits, args=args, train_dataset=addition_dataset())
    modes, generate = [], trainer._generate

    def spy(prompts):
        modes.append(trainer.model.training)
        return generate(prompts)

    trainer._generate = spy
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    trainer._generate_and_score_completions(batch)
    assert modes == [True, False]  # the sampled batch in train mode, the greedy baseline in eval mode
    assert trainer.model.training
    # With dropout active the greedy decode would depend on the RNG; in eval mode it does not.
    torch.manual_seed(1)
    first = trainer.greedy_baseline(4)[1]
    torch.manual_seed(2)
    assert torch.equal(first, trainer.greedy_baseline(4)[1])
    assert trainer.model.training
