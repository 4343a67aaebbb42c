"""Defaults that depend on the machine (bf16, use_cpu) and the launch check for a lost distributed setup."""

from __future__ import annotations

import os

import torch


def has_accelerator() -> bool:
    """Whether torch sees a GPU-like device (CUDA, XPU or Apple MPS)."""
    xpu = getattr(torch, "xpu", None)
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(xpu and xpu.is_available()) or bool(mps and mps.is_available())


def supports_bf16() -> bool:
    """Whether mixed bf16 training runs here: a GPU with bf16 (transformers refuses bf16 otherwise)."""
    from transformers.utils import is_torch_bf16_gpu_available

    return is_torch_bf16_gpu_available()


def machine_defaults(args) -> None:
    """Fill `bf16` and `use_cpu` when the user left them unset (None): what this machine supports.

    TRL defaults `bf16` to True, which fails on a machine without a bf16 GPU; `use_cpu` left False on a machine
    without a GPU makes `accelerate launch --multi_gpu` start independent single-process runs.
    """
    if args.use_cpu is None:
        args.use_cpu = not has_accelerator()
    if args.bf16 is None and not args.fp16:
        args.bf16 = supports_bf16() and not args.use_cpu


def check_world_size(num_processes: int) -> None:
    """Stop when the launcher started several processes that did not join one distributed run."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1 and num_processes == 1:
        raise RuntimeError(
            f"This process was launched as one of WORLD_SIZE={world} processes, but its accelerator runs a single "
            "process: each rank would train alone and overwrite the same output folder. On a machine without a GPU "
            "set use_cpu=True in the config (or leave it unset: trl-plus configs then pick it) and launch with "
            "`accelerate launch --multi_gpu --num_processes N ...`; otherwise check the launcher's distributed "
            "settings (`accelerate config`)."
        )
