"""Every trl-plus trainer under `accelerate launch --multi_gpu --num_processes 2` (2 gloo processes on CPU).

One launch runs all trainers (`distributed_worker.py`; start-up costs tens of seconds here), guarded by a timeout.
Exactness: with pinned completions and a deterministic reward, the advantages that rank 0 and rank 1 hand to the
loss, concatenated, equal those a single process hands to the loss for the same global generation batch
(TRL's sampler is seeded, and the global batch is the same: 2 x 4 rows vs 1 x 8 rows). Rows are matched by
(prompt, completion), since TRL shuffles each process's rows before the loss.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from tests.trainers import distributed_worker as worker
from trl_plus.algorithms import ALGORITHMS

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
LAUNCH_TIMEOUT = 600
EXACT = [name for name, spec in worker.RUNS.items() if spec[4]]
# Step 1 runs the same weights on both sides; step 2 runs weights updated by a DDP all-reduce on one side and by one
# backward on the other, which agree up to float rounding. Only REINFORCE++'s KL-in-reward sees the weights.
ATOL, RTOL = 1e-5, 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def launched(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("distributed")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), str(REPO / "tests" / "trainers" / "distributed_worker.py"),
           str(out), tiny_model_dir]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    try:
        proc = subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        tail = (e.stderr or b"")[-3000:]
        pytest.fail(f"accelerate launch did not finish in {LAUNCH_TIMEOUT} s: a rank is probably waiting in a "
                    f"collective the other never reached (hang). Last stderr:\n{tail}")
    ranks = {}
    for r in (0, 1):
        path = out / f"rank{r}.pt"
        ranks[r] = torch.load(path, weights_only=False) if path.is_file() else None
    if proc.returncode != 0 or not all((out / f"rank{r}.done").is_file() for r in (0, 1)):
        errors = [run.get("error") for d in ranks.values() if d for run in d["runs"].values() if "error" in run]
        pytest.fail(f"accelerate launch failed (rc={proc.returncode}). Errors recorded by the ranks: {errors}\n"
                    f"stderr tail:\n{proc.stderr[-4000:]}")
    return ranks


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_model_dir):
    """The single-process runs, computed here lazily with the worker's own code (one process, 8 rows per step)."""
    out, cache = tmp_path_factory.mktemp("single"), {}

    def get(name):
        if name not in cache:
            cache[name] = worker.train(name, tiny_model_dir, str(out / name), per_device=2 * worker.G)
        return cache[name]

    return get


def run_of(ranks, name):
    return [ranks[r]["runs"][name] for r in (0, 1)]


def rows(call, key_ids, key_mask):
    return [ids[m.bool()].tolist() for ids, m in zip(call[key_ids], call[key_mask])]


def masked_advantages(call) -> list[torch.Tensor]:
    """Per row: the advantage (B,) or the advantages of the completion's tokens (B, T), padding cut off."""
    adv, mask = call["advantages"], call["completion_mask"].bool()
    return [a.reshape(1) if adv.dim() == 1 else a[: m.size(0)][m] for a, m in zip(adv, mask)]


# ----- the launch -----------------------------------------------------------------------------------------------


def test_every_trainer_ran_on_two_gloo_processes(launched):
    assert {spec[0] for spec in worker.RUNS.values()} == set(ALGORITHMS)  # grpo: the engine with other estimators
    for r in (0, 1):
        assert launched[r]["rank"] == r and launched[r]["world"] == 2
        assert launched[r]["distributed_type"] == "DistributedType.MULTI_CPU" and launched[r]["backend"] == "gloo"
        for name, run in launched[r]["runs"].items():
            steps = [row for row in run["log"] if "loss" in row]
            assert len(run["calls"]) == 2 and len(steps) == 2, name
            assert all(torch.isfinite(torch.tensor(row["loss"])) for row in steps), name


def test_ranks_hold_different_prompts(launched):
    """The split is real: rank 0 and rank 1 train on different groups of the same global batch."""
    r0, r1 = run_of(launched, "dr_grpo")
    for c0, c1 in zip(r0["calls"], r1["calls"]):
        assert rows(c0, "prompt_ids", "prompt_mask")[0] != rows(c1, "prompt_ids", "prompt_mask")[0]


# ----- exactness ------------------------------------------------------------------------------------------------


def keyed_advantages(calls) -> dict[tuple, torch.Tensor]:
    """(prompt ids, completion ids) -> that row's advantages. TRL shuffles the rows of each process's generation
    batch before the loss (`shuffle_sequence_dict`), so rows are matched by content, which is unique here (each
    prompt's G pinned completions differ)."""
    keyed = {}
    for call in calls:
        for p, c, a in zip(rows(call, "prompt_ids", "prompt_mask"), rows(call, "completion_ids", "completion_mask"),
                           masked_advantages(call)):
            key = (tuple(p), tuple(c))
            assert key not in keyed, "rows are not unique: the comparison would be ambiguous"
            keyed[key] = a
    return keyed


@pytest.mark.parametrize("name", EXACT)
def test_advantages_of_both_ranks_equal_the_single_process(launched, single, name):
    r0, r1 = run_of(launched, name)
    ref = single(name)
    assert len(ref["calls"]) == len(r0["calls"]) == len(r1["calls"]) == 2
    for step, (c0, c1, c) in enumerate(zip(r0["calls"], r1["calls"], ref["calls"]), start=1):
        distributed, reference = keyed_advantages([c0, c1]), keyed_advantages([c])
        # The same 8 rows (2 prompts x 4 completions), split 4 + 4 by prompt group.
        assert sorted(distributed) == sorted(reference) and len(reference) == 2 * worker.G, (name, step)
        assert len({p for p, _ in keyed_advantages([c0])}) == len({p for p, _ in keyed_advantages([c1])}) == 1
        keys = sorted(reference)
        torch.testing.assert_close(torch.cat([distributed[k] for k in keys]), torch.cat([reference[k] for k in keys]),
                                   atol=ATOL, rtol=RTOL, msg=lambda m, step=step: f"{name}, step {step}: {m}")
        assert torch.cat(list(reference.values())).abs().sum() > 0, (name, step)  # a real signal, not all zeros
    # What each rank logs (gathered metrics) is what the single process logs.
    for key in ("reward", "reward_std"):
        for r in (r0, r1):
            got = [row[key] for row in r["log"] if key in row]
            want = [row[key] for row in ref["log"] if key in row]
            assert got == pytest.approx(want, rel=1e-6), (name, key)


def test_reinforce_pp_whitens_over_both_ranks(launched):
    """Each rank's own advantages are not whitened on their own; together they have mean 0 and std 1."""
    r0, r1 = run_of(launched, "reinforce_pp")
    for c0, c1 in zip(r0["calls"], r1["calls"]):
        a0, a1 = torch.cat(masked_advantages(c0)), torch.cat(masked_advantages(c1))
        both = torch.cat([a0, a1])
        assert abs(both.mean().item()) < 1e-5 and abs(both.std().item() - 1) < 1e-4  # core: unbiased variance
        assert abs(a0.mean().item()) > 0.05  # a per-rank whitening would give mean 0 here


def test_ppo_critic_trains_on_both_ranks_as_on_one(launched, single):
    """The critic's gradients are averaged over the ranks: its step-2 values (after one update) and value loss match
    the single process, so the critic's update equals the single-process one."""
    r0, _ = run_of(launched, "ppo")
    ref = single("ppo")
    for key in ("ppo/value_mean", "ppo/value_loss", "ppo/explained_variance", "ppo/returns_mean"):
        got, want = [row[key] for row in r0["log"] if key in row], [row[key] for row in ref["log"] if key in row]
        assert len(want) == 2 and got == pytest.approx(want, rel=1e-5, abs=1e-6), key
    assert [row["ppo/value_mean"] for row in ref["log"] if "ppo/value_mean" in row][0] != \
        [row["ppo/value_mean"] for row in ref["log"] if "ppo/value_mean" in row][1]  # the critic did move


# ----- DAPO dynamic sampling across processes ------------------------------------------------------------------


def test_dapo_ranks_run_the_same_rounds_and_keep_equal_batches(launched, tiny_model_dir):
    r0, r1 = run_of(launched, "dapo_drop")
    logs = [[row for row in r["log"] if "dapo/gen_rounds" in row] for r in (r0, r1)]
    keys = ("dapo/gen_rounds", "dapo/groups_generated", "dapo/groups_kept", "dapo/groups_filled")
    assert [[row[k] for k in keys] for row in logs[0]] == [[row[k] for k in keys] for row in logs[1]]
    assert logs[0][0]["dapo/gen_rounds"] > 1  # rank 1 dropped its first group; rank 0 took part in the extra rounds
    assert all(row["dapo/groups_kept"] == 2 and row["dapo/groups_filled"] == 0 for row in logs[0])
    for c0, c1 in zip(r0["calls"], r1["calls"]):
        assert c0["advantages"].shape == c1["advantages"].shape == (worker.G,)
        for c in (c0, c1):  # every kept group has a spread, so a non-zero advantage
            assert c["advantages"].abs().sum() > 0 and c["completion_mask"].sum() > 0
    # Rank 0 kept its own first-round group (the even-answer prompt the data put first in the sampler's order);
    # rank 1 dropped its odd-answer first group and kept a drawn prompt with an even answer.
    ds = worker.dataset(first_even_then_odd=True)
    answers = {row["prompt"]: worker.gold(row["answer"]) for row in ds}
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(worker.SEED)).tolist()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    kept = [tok.decode(rows(r["calls"][0], "prompt_ids", "prompt_mask")[0]) for r in (r0, r1)]
    assert kept[0] == ds[order[0]]["prompt"] and answers[ds[order[1]]["prompt"]] % 2 == 1
    assert kept[1] != ds[order[1]]["prompt"] and answers[kept[1]] % 2 == 0


def test_dapo_always_flat_rewards_stop_at_the_cap_on_both_ranks(launched):
    r0, r1 = run_of(launched, "dapo_flat")
    for r in (r0, r1):
        steps = [row for row in r["log"] if "loss" in row]
        assert [(row["dapo/gen_rounds"], row["dapo/groups_kept"], row["dapo/groups_filled"]) for row in steps] == \
            [(2, 0, 2)] * 2  # 2 rounds (the cap), no group kept, one filler group per rank
        assert all(c["advantages"].shape == (worker.G,) and c["completion_mask"].sum() == 0 for c in r["calls"])
        assert all(row["loss"] == 0 for row in steps)

