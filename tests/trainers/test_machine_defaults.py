"""trl-plus configs default bf16 and use_cpu to what the machine supports; a lost distributed launch stops."""

import re
from pathlib import Path

import pytest
import torch

from trl_plus import DAPOConfig, PlusGRPOConfig, PlusGRPOTrainer, ReinforcePlusPlusConfig
from trl_plus.engine import machine

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("config", [PlusGRPOConfig, DAPOConfig, ReinforcePlusPlusConfig])
def test_unset_bf16_and_use_cpu_follow_the_machine(tmp_path, config, monkeypatch):
    monkeypatch.setattr(machine, "has_accelerator", lambda: False)
    monkeypatch.setattr(machine, "supports_bf16", lambda: False)
    args = config(output_dir=str(tmp_path), num_generations=4, per_device_train_batch_size=4)
    assert (args.bf16, args.use_cpu) == (False, True)
    monkeypatch.setattr(machine, "has_accelerator", lambda: True)
    monkeypatch.setattr(machine, "supports_bf16", lambda: True)
    # What the user set is kept; unset values follow the (pretended) GPU machine.
    assert machine_defaults_of(bf16=None, use_cpu=None, fp16=False) == (True, False)
    assert machine_defaults_of(bf16=False, use_cpu=True, fp16=False) == (False, True)


def machine_defaults_of(**values):
    class Args:
        pass

    args = Args()
    args.__dict__.update(values)
    machine.machine_defaults(args)
    return args.bf16, args.use_cpu


def test_world_size_without_a_distributed_accelerator_stops(tiny_model_dir, addition_dataset, fast_args,
                                                            monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="set use_cpu=True"):
        machine.check_world_size(1)
    machine.check_world_size(2)  # a real 2-process run
    monkeypatch.delenv("WORLD_SIZE")
    machine.check_world_size(1)
    # The trainer runs the check with its accelerator's process count (the environment is left alone here:
    # accelerate's process state is global and would keep a fake WORLD_SIZE for later tests).
    from trl_plus.engine import trainer as engine

    seen = []
    monkeypatch.setattr(engine, "check_world_size", seen.append)
    PlusGRPOTrainer(model=tiny_model_dir, reward_funcs=lambda completions, **k: [0.0] * len(completions),
                    args=PlusGRPOConfig(**fast_args()), train_dataset=addition_dataset())
    assert seen == [1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only default")
def test_readme_snippet_runs_on_cpu_without_setting_bf16(tiny_model_dir, tmp_path, monkeypatch):
    """The README's "Swap a trainer in" snippet, offline: the tiny model, synthetic rows, one step."""
    snippet = re.search(r"## Swap a trainer in\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert "bf16" not in snippet and "use_cpu" not in snippet
    snippet = (snippet
               .replace('load_dataset("openai/gsm8k", "main", split="train")', "generate_problems(16)")
               .replace('"Qwen/Qwen2.5-0.5B-Instruct"', repr(tiny_model_dir))
               .replace('output_dir="qwen-rpp"', f"output_dir={str(tmp_path)!r}, max_steps=1, report_to=[]")
               .replace("max_completion_length=300", "max_completion_length=8"))
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec("from trl_plus.data import generate_problems\n" + snippet, namespace)  # noqa: S102 - the README's own code
    trainer = namespace["trainer"]
    assert trainer.state.global_step == 1 and trainer.args.bf16 is False
