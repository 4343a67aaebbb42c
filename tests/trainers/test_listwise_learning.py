"""Offline learning check: on the demo task, listwise DPO on rankings of K = 4 samples from the SFT-warmed tiny model
raises held-out accuracy (the pairwise comparison at scale is benchmarks/listwise.py)."""

import copy

import pytest
from transformers import set_seed

from trl_plus import ListwiseDPOConfig, ListwiseDPOTrainer, build_listwise_dataset
from trl_plus.data import generate_problems, to_prompt_dataset
from trl_plus.demo import REWARDS, DemoSettings, greedy_accuracy, sft_warmup, tiny_model_path


@pytest.mark.e2e
def test_listwise_dpo_on_ranked_samples_raises_held_out_accuracy(tmp_path):
    settings = DemoSettings(seed=0, out_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), n_dev=50,
                            sft_target=SFT_TARGET)
    train = generate_problems(2000, seed=0)
    test = generate_problems(100, seed=2_000_003)
    model, tok, _ = sft_warmup(tiny_model_path(settings), train, generate_problems(50, seed=1_000_003), settings)
    before = greedy_accuracy(model, tok, test)
    set_seed(0)
    ranked = build_listwise_dataset(model, to_prompt_dataset(train[:PROMPTS], system_prompt=None, conversational=False),
                                    list(REWARDS), k=4, tokenizer=tok, reward_weights=list(REWARDS.values()),
                                    max_new_tokens=settings.max_completion_length, batch_size=64, drop_all_tied=True)
    assert len(ranked) > PROMPTS // 4  # the SFT model is right on some samples and wrong on others
    args = ListwiseDPOConfig(output_dir=str(tmp_path / "dpo"), use_cpu=True, bf16=False, seed=0, report_to=[],
                             beta=0.1, learning_rate=LR, per_device_train_batch_size=16, num_train_epochs=1,
                             lr_scheduler_type="constant", save_strategy="no", gradient_checkpointing=False,
                             disable_tqdm=True, max_length=None)
    trainer = ListwiseDPOTrainer(model=model, ref_model=copy.deepcopy(model), args=args, processing_class=tok,
                                 train_dataset=ranked.remove_columns(["answer"]))
    trainer.train()
    after = greedy_accuracy(trainer.model, tok, test)
    assert after >= before + 0.05, (before, after)
