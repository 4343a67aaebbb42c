"""Cross-process exactness: whitening with a reducer over 2 shards gives the whole-batch result.

Once with an in-process fake reducer (two threads, one per shard, that really exchange their partial sums), once
with a real 2-process `torch.distributed` gloo run.
"""

import inspect
import os
import socket
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from trl_plus import core

CORE_PATH = Path(core.__file__).resolve()


# make_batch and compute run here and, by their source, in the gloo workers: both build the same batch.
def make_batch(core):
    gen = torch.Generator().manual_seed(1234)
    batch, length = 8, 11
    lengths = torch.tensor([11, 3, 0, 7, 1, 11, 5, 9])  # row 2 is all padding
    mask = torch.arange(length)[None, :] < lengths[:, None]
    rewards = torch.randint(0, 4, (batch,), generator=gen).double()
    rewards[5] = float("nan")
    group_ids = torch.tensor([0, 1, 0, 1, 2, 3, 2, 3])  # non-contiguous; shard 0 = rows 0-3, shard 1 = rows 4-7
    logp = -torch.rand(batch, length, generator=gen, dtype=torch.float64)
    ref_logp = logp + 0.1 * torch.randn(batch, length, generator=gen, dtype=torch.float64)
    kl = core.kl_penalty(logp, ref_logp, "k1")
    token_rewards = core.token_level_rewards(rewards, mask, kl=kl, kl_coef=0.05, reward_clip=10.0)
    values = torch.randn(batch, length, generator=gen, dtype=torch.float64)
    return {
        "mask": mask,
        "rewards": rewards,
        "group_ids": group_ids,
        "kl": kl,
        "token_rewards": token_rewards,
        "values": values,
    }


def compute(core, d, rows, reducer):
    m = d["mask"][rows]
    return {
        "whiten": core.masked_whiten(d["values"][rows], m, reducer),
        "reinforce_pp": core.reinforce_pp_advantages(d["token_rewards"][rows], m, 0.97, reducer),
        "reinforce_pp_baseline": core.reinforce_pp_baseline_advantages(
            d["rewards"][rows], d["group_ids"][rows], m, d["kl"][rows], 0.05, reducer
        ),
        "gae": core.gae_advantages(d["token_rewards"][rows], d["values"][rows], m, 0.99, 0.95, reducer)[0],
    }


SHARDS = [torch.arange(0, 4), torch.arange(4, 8)]


def whole_batch():
    data = make_batch(core)
    return data, compute(core, data, torch.arange(8), None)


def assert_same_as_whole(shard_results, expected):
    for key, value in expected.items():
        joined = torch.cat([result[key] for result in shard_results])
        torch.testing.assert_close(joined, value, atol=1e-12, rtol=1e-12, msg=key)


class ThreadSumReducer:
    """Fake all-reduce for shards run in threads: each caller posts its tensor, waits for the others, and gets back
    the sum of all posted tensors (added in rank order, so every rank sees the same bits)."""

    def __init__(self, world_size):
        self.slots = [None] * world_size
        self.barrier = threading.Barrier(world_size, timeout=10)
        self.calls = 0

    def for_rank(self, rank):
        def reduce(tensor):
            self.slots[rank] = tensor.clone()
            self.barrier.wait()
            total = sum(self.slots[1:], self.slots[0].clone())
            self.barrier.wait()  # nobody posts the next round before everyone has read this one
            if rank == 0:
                self.calls += 1
            return total

        return reduce


class AcceleratorLike:
    """Duck-types `accelerate.Accelerator.reduce` so the `.reduce(tensor, reduction="sum")` path runs too."""

    def __init__(self, reduce_fn):
        self.reduce_fn = reduce_fn

    def reduce(self, tensor, reduction="mean"):
        assert reduction == "sum"
        return self.reduce_fn(tensor)


def run_in_threads(data, wrap):
    fake = ThreadSumReducer(2)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(compute, core, data, SHARDS[rank], wrap(fake.for_rank(rank))) for rank in range(2)]
        results = [f.result(timeout=30) for f in futures]  # re-raises a shard's exception here
    return results, fake.calls


@pytest.mark.parametrize("wrap", [lambda fn: fn, AcceleratorLike], ids=["callable", "accelerator-like"])
def test_two_shards_with_fake_reducer_match_whole_batch(wrap):
    data, expected = whole_batch()
    results, calls = run_in_threads(data, wrap)
    assert calls == 8  # two all-reduces (mean, then variance) per whitening, four whitenings
    assert_same_as_whole(results, expected)


def test_two_shards_without_reducer_differ():
    # the check above means something: local statistics do give different advantages
    data, expected = whole_batch()
    local = [compute(core, data, rows, None) for rows in SHARDS]
    assert not torch.allclose(torch.cat([r["reinforce_pp"] for r in local]), expected["reinforce_pp"])


WORKER = textwrap.dedent(
    """
    import datetime, importlib.util, sys
    import torch
    import torch.distributed as dist

    rank, world, port, core_path, data_source, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], *sys.argv[4:]
    # Load core.py by path: it only needs torch, and this skips importing the rest of the package.
    spec = importlib.util.spec_from_file_location("trl_plus_core_under_test", core_path)
    core = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(core)
    spec = importlib.util.spec_from_file_location("core_test_data", data_source)
    data_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(data_module)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=30))
    data = data_module.make_batch(core)
    rows = torch.arange(4 * rank, 4 * rank + 4)
    result = data_module.compute(core, data, rows, lambda t: (dist.all_reduce(t), t)[1])
    torch.save(result, out)
    dist.barrier()
    dist.destroy_process_group()
    """
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_whole_batch(tmp_path):
    pytest.importorskip("torch.distributed")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    data_source = tmp_path / "data.py"
    data_source.write_text("import torch\n\n\n" + inspect.getsource(make_batch) + "\n\n" + inspect.getsource(compute))
    port = str(free_port())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if sys.platform.startswith("linux"):  # keep gloo on loopback, whatever interfaces the host has
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                str(rank),
                "2",
                port,
                str(CORE_PATH),
                str(data_source),
                str(tmp_path / f"rank{rank}.pt"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=60)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail("gloo workers did not finish within 60 s")
    for rank, p in enumerate(procs):
        assert p.returncode == 0, f"rank {rank} failed:\n{logs[rank]}"
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    _, expected = whole_batch()
    assert_same_as_whole(results, expected)
