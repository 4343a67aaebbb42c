"""`trl-plus demo --algo ALGO`: the demo's RL stage runs for every algorithm (one step each)."""

import math

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_plus.algorithms import ALGORITHMS
from trl_plus.data import generate_problems
from trl_plus.demo import REWARDS, DemoSettings, rl_train


@pytest.mark.e2e
@pytest.mark.filterwarnings("ignore:DAPO dynamic sampling hit max_num_gen_batches")  # an untrained tiny model
@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_demo_rl_stage_runs_for_every_algorithm(algo, tiny_model_dir, tmp_path):
    settings = DemoSettings(algo=algo, out_dir=str(tmp_path), rl_steps=1, rl_prompts_per_step=2, num_generations=2,
                            max_completion_length=6)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = rl_train(model, tokenizer, generate_problems(16, seed=0), settings)
    assert trainer.state.global_step == 1
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])  # the summary row (logging_steps is 10)
    assert set(REWARDS) <= set(trainer.reward_func_names)
