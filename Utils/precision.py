"""Which arithmetic the learner may use: the check for native bfloat16 on this CPU.

``--precision bf16`` runs ACER's update (the learner's forward and backward, and the average
network's forward) with its image trunk in bfloat16. On a CPU without bf16 instructions
oneDNN emulates them, which is slower than float32, so such a run is refused before it starts.
The environment variable ``ACER_BF16_NATIVE`` (``0`` or ``1``) forces the answer, for tests
and for machines whose CPU flags torch cannot read.
"""
from __future__ import annotations

import os

import torch

FORCE_VARIABLE = "ACER_BF16_NATIVE"


def native_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), or when
    ``ACER_BF16_NATIVE`` says so."""
    forced = os.environ.get(FORCE_VARIABLE)
    if forced is not None and forced.strip() in ("0", "1"):
        return forced.strip() == "1"
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def check_precision(precision: str, obs_shape: tuple[int, ...]) -> str | None:
    """Why ``precision`` cannot be used for this run (one line), or None when it can."""
    if precision != "bf16":
        return None
    if len(obs_shape) != 3:
        return ("--precision bf16 speeds up the convolutional trunk of image observations only; "
                f"this environment has vector observations {tuple(obs_shape)}: use --precision fp32")
    if not native_bf16():
        return ("--precision bf16 needs a CPU with native bfloat16 instructions (AVX-512 BF16 or "
                "AMX) and this one has neither, so it would run slower than fp32: use --precision fp32")
    return None
