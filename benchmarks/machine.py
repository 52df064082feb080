"""The machine a benchmark ran on: speeds compare only as ratios measured on one machine, so every script says which."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

MATRIX_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def describe() -> str:
    """CPU model, the flags that decide matrix-product speed, core count and torch version."""
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        info = []
    model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), None)
    flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    present = [f for f in MATRIX_FLAGS if f in flags]
    return (
        f"CPU: {model or platform.processor() or 'unknown'} ({', '.join(present) or 'no AVX2'}), "
        f"{os.cpu_count()} cores; torch {torch.__version__}"
    )
