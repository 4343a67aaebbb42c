"""ListwiseDPOTrainer: K = 2 equals TRL's sigmoid DPO, the listwise loss by hand, variable K, top_k, PEFT, errors."""

import math

import peft
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer

from tests.conftest import changed, frozen_snapshot, trainable_snapshot
from trl_plus import ListwiseDPOConfig, ListwiseDPOTrainer
from trl_plus.listwise_data import ListwiseDataError
from trl_plus.plackett_luce import plackett_luce_nll

PAIRS = [("What is 12+30?\n", "#### 42", "#### 4312"), ("What is 45+11?\n", "#### 56", "#### 5745"),
         ("What is 3+99?\n", "#### 102", "#### 1033"), ("What is 20+20?\n", "#### 40", "#### 4120")]
LISTS = [  # K = 3, 2, 4 with ties: exercise padding and the ties rule; rankings and scores mixed (null elsewhere)
    {"prompt": "What is 1+2?\n", "completions": ["#### 3", "#### 4", "#### 33"], "scores": [1.0, 0.0, 0.0],
     "ranking": None},
    {"prompt": "What is 5+5?\n", "completions": ["#### 11", "#### 10"], "scores": None, "ranking": [1, 0]},
    {"prompt": "What is 7+1?\n", "completions": ["#### 9", "#### 8", "x", "#### 80"], "scores": [0.5, 2.0, -1.0, 0.5],
     "ranking": None},
]


def args(tmp_path, cls=ListwiseDPOConfig, **overrides):
    kwargs = dict(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, beta=0.5, report_to=[], seed=0,
                  gradient_checkpointing=False, per_device_train_batch_size=4, max_steps=2, learning_rate=1e-3,
                  logging_steps=1, save_strategy="no", disable_tqdm=True)
    kwargs.update(overrides)
    return cls(**kwargs)


@pytest.fixture(scope="module")
def ref_dir(tmp_path_factory):
    """A second tiny model (another seed) as the reference, so that the policy/reference log-ratios are not 0."""
    from trl_plus.tiny import save_tiny_model

    return str(save_tiny_model(tmp_path_factory.mktemp("ref"), seed=1))


def make(tiny_model_dir, ref_dir, rows, config, cls=ListwiseDPOTrainer, **kwargs):
    return cls(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
               ref_model=AutoModelForCausalLM.from_pretrained(ref_dir), args=config,
               train_dataset=Dataset.from_list(rows), **kwargs)


def first_batch(trainer, n):
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


@pytest.mark.parametrize("conversational", [False, True], ids=["plain", "conversational"])
def test_k2_equals_trl_sigmoid_dpo(tiny_model_dir, ref_dir, tmp_path, conversational):
    def wrap(text, role):
        return [{"role": role, "content": text}] if conversational else text

    pairs = [{"prompt": wrap(p, "user"), "chosen": wrap(c, "assistant"), "rejected": wrap(r, "assistant")}
             for p, c, r in PAIRS]
    # the listwise rows list the rejected completion first: the ranking, not the order, says which is better
    lists = [{"prompt": p["prompt"], "completions": [p["rejected"], p["chosen"]], "ranking": [1, 0]} for p in pairs]
    trl_trainer = make(tiny_model_dir, ref_dir, pairs, args(tmp_path, DPOConfig), DPOTrainer)
    ours = make(tiny_model_dir, ref_dir, lists, args(tmp_path))
    trl_loss = trl_trainer.compute_loss(trl_trainer.model, first_batch(trl_trainer, 4))
    our_loss = ours.compute_loss(ours.model, first_batch(ours, 4))
    assert abs(trl_loss.item() - math.log(2)) > 0.01  # a real comparison, not two losses at log 2
    torch.testing.assert_close(our_loss, trl_loss, atol=1e-5, rtol=1e-5)
    trl_loss.backward()
    our_loss.backward()
    for (name, p), q in zip(trl_trainer.model.named_parameters(), ours.model.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-4, msg=name)


def sequence_logp(model, tok, prompt, completion):
    """Summed log-prob of `completion` + EOS after `prompt`, from a plain forward pass (independent of TRL)."""
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    c = tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    with torch.no_grad():
        logits = model(torch.tensor([p + c])).logits[0, len(p) - 1 : -1]
    return torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(c).unsqueeze(-1)).sum().item()


@pytest.mark.parametrize("top_k", [None, 1, 2])
def test_listwise_loss_by_hand(tiny_model_dir, ref_dir, tmp_path, top_k):
    trainer = make(tiny_model_dir, ref_dir, LISTS, args(tmp_path, top_k=top_k))
    loss = trainer.compute_loss(trainer.model, first_batch(trainer, 3))
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    policy, ref = AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoModelForCausalLM.from_pretrained(ref_dir)
    # best first, with tie levels, by the documented rule
    ranked = [(["#### 3", "#### 4", "#### 33"], [0, 1, 1]), (["#### 10", "#### 11"], [0, 1]),
              (["#### 8", "#### 9", "#### 80", "x"], [0, 1, 1, 2])]
    expected = 0.0
    for row, (completions, levels) in zip(LISTS, ranked):
        s = [0.5 * (sequence_logp(policy, tok, row["prompt"], c) - sequence_logp(ref, tok, row["prompt"], c))
             for c in completions]
        expected += plackett_luce_nll(torch.tensor([s]), top_k=top_k, levels=torch.tensor([levels])).item() / 3
    assert loss.item() == pytest.approx(expected, abs=1e-4)


def test_top_k_changes_the_loss(tiny_model_dir, ref_dir, tmp_path):
    losses = []
    for top_k in (None, 1):
        trainer = make(tiny_model_dir, ref_dir, LISTS, args(tmp_path, top_k=top_k))
        losses.append(trainer.compute_loss(trainer.model, first_batch(trainer, 3)).item())
    assert losses[0] > losses[1] > 0


def test_trains_on_variable_k_and_logs_metrics(tiny_model_dir, ref_dir, tmp_path):
    trainer = make(tiny_model_dir, ref_dir, LISTS, args(tmp_path))
    before = trainable_snapshot(trainer.model)
    ref_before = {n: p.detach().clone() for n, p in trainer.ref_model.named_parameters()}
    trainer.train()
    assert trainer.state.global_step == 2
    assert changed(before, trainer.model)
    assert not changed(ref_before, trainer.ref_model)
    logged = trainer.state.log_history[0]
    assert math.isfinite(logged["loss"]) and logged["list_size"] == 3.0  # (3 + 2 + 4) / 3
    assert {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"} <= set(logged)


def test_peft_reference_is_the_base_model(tiny_model_dir, tmp_path):
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = ListwiseDPOTrainer(model=tiny_model_dir, args=args(tmp_path), train_dataset=Dataset.from_list(LISTS),
                                 peft_config=config)
    assert trainer.ref_model is None
    # at the start the adapter is zero, so the policy is its own reference and every score is 0. Ranked levels
    # [0,1,1], [0,1], [0,1,1,2]: log 3 + 2 log 2 (best of 3, then the tied pair over 2); log 2; log 4 + 2 log 3
    expected = (3 * math.log(3) + 5 * math.log(2)) / 3
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, trainer._prepare_inputs(first_batch(trainer, 3)))
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    frozen, trainable = frozen_snapshot(trainer.model), trainable_snapshot(trainer.model)
    trainer.train()
    assert not changed(frozen, trainer.model)
    assert changed(trainable, trainer.model) and all("lora" in n for n in trainable)


@pytest.mark.parametrize(
    "rows, top_k, message",
    [
        ([{"prompt": "p", "completions": ["a", "b"], "ranking": [0, 0]}], None, "row 0: ranking [0, 0] is not a"),
        ([LISTS[1], {"prompt": "p", "completions": ["a"], "ranking": [0]}], None, "row 1: has K=1"),
        ([LISTS[1], {"prompt": "p", "completions": ["a", ""], "ranking": [0, 1]}], None,
         "row 1: completion 1 is empty"),
        ([{"prompt": "p", "completions": ["a", "b"], "scores": [float("nan"), 1.0]}], None, "row 0: scores [nan, 1.0]"),
        ([LISTS[0], LISTS[1]], 3, "row 1: top_k=3 is larger than its K=2"),
        ([{"prompt": "p", "chosen": "a", "rejected": "b"}], None, "missing column(s) ['completions']"),
    ],
    ids=["not-permutation", "k1", "empty", "nan", "top-k", "pairwise-data"],
)
def test_bad_rows_are_named(tiny_model_dir, ref_dir, tmp_path, rows, top_k, message):
    with pytest.raises(ListwiseDataError) as e:
        make(tiny_model_dir, ref_dir, rows, args(tmp_path, top_k=top_k))
    assert message in str(e.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"loss_type": ["ipo"]}, "does not support loss_type"),
        ({"precompute_ref_log_probs": True}, "does not support precompute_ref_log_probs"),
        ({"ld_alpha": 0.5}, "does not support ld_alpha"),
        ({"top_k": 0}, "top_k must be >= 1"),
    ],
)
def test_config_errors(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        args(tmp_path, **overrides)


def test_bf16_defaults_to_what_the_machine_supports(tmp_path):
    supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    assert ListwiseDPOConfig(output_dir=str(tmp_path)).bf16 is supported
    assert ListwiseDPOConfig(output_dir=str(tmp_path), use_cpu=True).bf16 is False
    assert ListwiseDPOConfig(output_dir=str(tmp_path), bf16=False).bf16 is False
