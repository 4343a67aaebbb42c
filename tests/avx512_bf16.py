"""bitsandbytes as it runs on a CPU with AVX512-BF16, on any CPU.

There, `Linear4bit` repacks its weight at its first eval-mode forward without gradients and then calls
`bitsandbytes::gemv_4bit`, a native bf16 kernel. Where the CPU lacks the instructions, `emulated()`
turns the same switch on and registers `gemv_4bit_bf16`, the kernel's arithmetic in torch: unpack the
repacked nibbles, scale by the bf16 absmax, and multiply in bf16. On a CPU that has them, the real
kernel runs and nothing is replaced.
"""

from __future__ import annotations

import contextlib

import bitsandbytes as bnb
import torch


def gemv_4bit_bf16(A, B, shapeB, absmax, code, blocksize):
    """`A @ W.T` in bf16 for `A (..., K)`; `B (N, K/2)` uint8 as `_convert_weight_packed_for_cpu` lays it out.

    The layout: blocks of 32 output rows; a byte holds one weight of row r (low nibble) and the same
    column's weight of row r + 16 (high nibble). `absmax (K/blocksize, N)` is bf16.
    """
    n, k = shapeB
    pairs = B.view(torch.uint8).reshape(-1, 32)
    index = torch.cat([pairs & 0xF, pairs >> 4], dim=-1).reshape(n // 32, k // 2, 32, 2).transpose(1, 2)
    weight = code.float()[index.reshape(n, k).long()] * absmax.float().T.repeat_interleave(blocksize, dim=1)
    return (A.to(torch.bfloat16) @ weight.to(torch.bfloat16).T).to(A.dtype)


def native() -> bool:
    """Whether this CPU takes the path without emulation."""
    return bool(bnb.functional.has_avx512bf16())


@contextlib.contextmanager
def emulated():
    """Linear4bit layers built inside take bitsandbytes' AVX512-BF16 CPU path."""
    if native():
        yield
        return
    library = torch.library.Library("bitsandbytes", "IMPL")
    library.impl("gemv_4bit", gemv_4bit_bf16, "CPU")
    switch = bnb.nn.modules.has_avx512bf16
    bnb.nn.modules.has_avx512bf16 = lambda: True
    try:
        yield
    finally:
        bnb.nn.modules.has_avx512bf16 = switch
        library._destroy()
