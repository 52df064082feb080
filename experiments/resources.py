"""How a job shares this machine: the jobs a launcher runs side by side, a job's DDP processes, its threads.

The study's own process reads the launcher facts only; torch is imported by the functions of the jobs' processes
that need it, so that the study starts its jobs without loading it."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from omegaconf import DictConfig

MATRIX_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")  # what decides matrix-product speed
MULTIRUN_JOBS_ENV = "SPARSE4D_LAB_MULTIRUN_JOBS"  # jobs in the running multirun, for the launcher's processes
JOB_OVERRIDES_ENV = "SPARSE4D_LAB_JOB_OVERRIDES"  # a study job's overrides, for the DDP ranks Lightning starts


def uses_ddp(trainer: DictConfig) -> bool:
    """Lightning starts a DDP job's other ranks itself (by re-running the command line)."""
    return "ddp" in str(trainer.get("strategy"))


def launcher_jobs(launcher: DictConfig) -> int:
    """Jobs a Hydra launcher runs at once: joblib's ``n_jobs`` (-1 = one per core), else 1."""
    n_jobs = launcher.get("n_jobs") or 1
    return len(os.sched_getaffinity(0)) if n_jobs < 0 else int(n_jobs)


def jobs_side_by_side() -> int:
    """Jobs running at once on this machine: the running launcher's, but no more than the multirun has (its
    start writes the count to ``MULTIRUN_JOBS_ENV``), 1 outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return 1
    jobs = launcher_jobs(HydraConfig.get().launcher)
    return min(jobs, int(os.environ[MULTIRUN_JOBS_ENV])) if MULTIRUN_JOBS_ENV in os.environ else jobs


def cpu_ranks(trainer: DictConfig) -> int:
    """Processes one job runs on this machine's CPU: its DDP ranks when they are CPU processes, else 1."""
    import torch

    devices = trainer.get("devices")
    on_cpu = trainer.get("accelerator") == "cpu" or (
        trainer.get("accelerator") == "auto" and not torch.cuda.is_available()
    )
    return devices if on_cpu and uses_ddp(trainer) and isinstance(devices, int) and devices > 0 else 1


def share_cores(threads: int | None, ranks: int = 1) -> int:
    """Set and return this process's PyTorch intra-op threads: ``threads`` (validated >= 1 with the config), or
    by default the cores divided among the jobs running side by side and their CPU ranks. On a 2-core CPU two
    one-thread jobs train ~1.4x faster together than one two-thread job after the other: the tiny model's many
    small ops keep two threads waiting on each other, and oversubscribed cores are worse still."""
    import torch

    if threads is None:
        threads = max(1, len(os.sched_getaffinity(0)) // (jobs_side_by_side() * ranks))
    torch.set_num_threads(threads)
    return threads


def describe_machine() -> str:
    """CPU model, the flags that decide matrix-product speed, core count and torch version: speeds (and the last
    digits of results) compare only between runs on the same kind of machine."""
    import torch

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
