"""PlackettLuceRewardTrainer: K = 2 equals TRL's Bradley-Terry reward loss, the listwise loss by hand, training."""

import math

import peft
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from trl import RewardConfig, RewardTrainer

from tests.conftest import changed, frozen_snapshot, trainable_snapshot
from trl_plus import PlackettLuceRewardConfig, PlackettLuceRewardTrainer
from trl_plus.listwise_data import ListwiseDataError
from trl_plus.plackett_luce import plackett_luce_nll

PAIRS = [("What is 12+30?\n", "#### 42", "#### 4312"), ("What is 45+11?\n", "#### 56", "#### 5745"),
         ("What is 3+99?\n", "#### 102", "#### 1033")]
LISTS = [
    {"prompt": "What is 1+2?\n", "completions": ["#### 3", "#### 4", "#### 33"], "scores": [1.0, 0.0, 0.0]},
    {"prompt": "What is 7+1?\n", "completions": ["#### 9", "#### 8", "x", "#### 80"], "scores": [0.5, 2.0, -1.0, 0.5]},
]


def args(tmp_path, cls=PlackettLuceRewardConfig, **overrides):
    kwargs = dict(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to=[], seed=0,
                  gradient_checkpointing=False, per_device_train_batch_size=3, max_steps=2, learning_rate=1e-3,
                  logging_steps=1, save_strategy="no", disable_tqdm=True)
    kwargs.update(overrides)
    return cls(**kwargs)


def first_batch(trainer, n):
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


@pytest.mark.parametrize("center", [None, 0.1], ids=["plain", "centred"])
def test_k2_equals_trl_bradley_terry(tiny_model_dir, tmp_path, center):
    pairs = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in PAIRS]
    lists = [{"prompt": p, "completions": [r, c], "ranking": [1, 0]} for p, c, r in PAIRS]
    # both trainers seed before loading, so the fresh reward heads are identical
    trl_args = args(tmp_path, RewardConfig, center_rewards_coefficient=center)
    trl_trainer = RewardTrainer(model=tiny_model_dir, args=trl_args, train_dataset=Dataset.from_list(pairs))
    ours = PlackettLuceRewardTrainer(model=tiny_model_dir, args=args(tmp_path, center_rewards_coefficient=center),
                                     train_dataset=Dataset.from_list(lists))
    trl_loss = trl_trainer.compute_loss(trl_trainer.model, first_batch(trl_trainer, 3))
    our_loss = ours.compute_loss(ours.model, first_batch(ours, 3))
    assert abs(trl_loss.item() - math.log(2)) > 1e-3
    torch.testing.assert_close(our_loss, trl_loss, atol=1e-6, rtol=1e-5)
    trl_loss.backward()
    our_loss.backward()
    for (name, p), q in zip(trl_trainer.model.named_parameters(), ours.model.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-4, msg=name)


@pytest.mark.parametrize("top_k", [None, 1])
def test_listwise_loss_by_hand(tiny_model_dir, tmp_path, top_k):
    trainer = PlackettLuceRewardTrainer(model=tiny_model_dir, args=args(tmp_path, top_k=top_k),
                                        train_dataset=Dataset.from_list(LISTS))
    loss = trainer.compute_loss(trainer.model, first_batch(trainer, 2))
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = trainer.model

    def reward(prompt, completion):  # the whole sequence with EOS, as TRL's reward tokenisation has it
        ids = tok(prompt + completion + tok.eos_token, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            return model(torch.tensor([ids])).logits[0, 0].item()

    ranked = [(["#### 3", "#### 4", "#### 33"], [0, 1, 1]), (["#### 8", "#### 9", "#### 80", "x"], [0, 1, 1, 2])]
    expected = sum(
        plackett_luce_nll(torch.tensor([[reward(row["prompt"], c) for c in cs]]), top_k=top_k,
                          levels=torch.tensor([lv])).item()
        for row, (cs, lv) in zip(LISTS, ranked)
    ) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_trains_and_logs_listwise_metrics(tiny_model_dir, tmp_path):
    trainer = PlackettLuceRewardTrainer(model=tiny_model_dir, args=args(tmp_path, per_device_train_batch_size=2),
                                        train_dataset=Dataset.from_list(LISTS))
    before = trainable_snapshot(trainer.model)
    trainer.train()
    assert trainer.state.global_step == 2 and changed(before, trainer.model)
    logged = trainer.state.log_history[0]
    assert logged["list_size"] == 3.5 and {"accuracy", "margin", "mean_reward"} <= set(logged)
    assert math.isfinite(logged["loss"])


def test_peft_trains_only_the_adapter_and_head(tiny_model_dir, tmp_path):
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="SEQ_CLS",
                             modules_to_save=["score"])
    trainer = PlackettLuceRewardTrainer(model=tiny_model_dir, args=args(tmp_path), peft_config=config,
                                        train_dataset=Dataset.from_list(LISTS))
    frozen, trainable = frozen_snapshot(trainer.model), trainable_snapshot(trainer.model)
    trainer.train()
    assert not changed(frozen, trainer.model)
    assert changed(trainable, trainer.model) and all("lora" in n or "score" in n for n in trainable)


def test_max_length_drops_completions_not_the_ranking(tiny_model_dir, tmp_path):
    rows = [{"prompt": "Q\n", "completions": ["a", "b" * 40, "c"], "ranking": [1, 0, 2]},
            {"prompt": "Q\n", "completions": ["a", "b" * 40], "ranking": [1, 0]}]
    with pytest.warns(UserWarning, match="1 of 2 listwise rows were dropped"):
        trainer = PlackettLuceRewardTrainer(model=tiny_model_dir, args=args(tmp_path, max_length=10),
                                            train_dataset=Dataset.from_list(rows))
    assert len(trainer.train_dataset) == 1 and trainer.train_dataset[0]["levels"] == [1, 2]  # "a" above "c"


def test_bad_row_is_named(tiny_model_dir, tmp_path):
    rows = [LISTS[1], {"prompt": "p", "completions": ["a", "b", "c"], "scores": [1.0, 2.0, 3.0]}]
    with pytest.raises(ListwiseDataError, match="row 1: top_k=4 is larger than its K=3"):
        PlackettLuceRewardTrainer(model=tiny_model_dir, args=args(tmp_path, top_k=4),
                                  train_dataset=Dataset.from_list(rows))


def test_config_defaults(tmp_path):
    supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    assert PlackettLuceRewardConfig(output_dir=str(tmp_path)).bf16 is supported
    assert PlackettLuceRewardConfig(output_dir=str(tmp_path), fp16=False, bf16=False).bf16 is False
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        PlackettLuceRewardConfig(output_dir=str(tmp_path), top_k=0)
    with pytest.raises(TypeError, match="needs a PlackettLuceRewardConfig"):
        PlackettLuceRewardTrainer(model=AutoModelForSequenceClassification,
                                  args=RewardConfig(str(tmp_path), bf16=False), train_dataset=Dataset.from_list(LISTS))
