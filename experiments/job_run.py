"""A job's MLflow run: its identity (the hash of its config), its params, opening or resuming it for one owner,
and what a DDP worker needs from rank 0 to log into the same run."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from mlflow.entities import Param
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from omegaconf import DictConfig, OmegaConf

from . import tracking
from .callbacks import REPORT_KEYS, STUDY_RUN_ENV, study_parent
from .lease import HEARTBEAT_TAG, OWNER_TAG, claim, owner_alive
from .resources import JOB_OVERRIDES_ENV

JOB_RUN_ENV = "SPARSE4D_LAB_JOB_RUN"
JOB_RESUME_ENV = "SPARSE4D_LAB_JOB_RESUME"

log = logging.getLogger(__name__)
# Config keys that say where things go or how they are read, not what is computed: left out of the job's identity.
NOT_IDENTITY = ("paths", "logger", "hydra", "pretrain", "primary", *REPORT_KEYS)


def job_identity(cfg: DictConfig) -> dict[str, Any]:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return {k: v for k, v in resolved.items() if k not in NOT_IDENTITY}


# Keys hashed under an earlier name, so that the jobs of stores made before a rename are still found: the study's
# name was the key ``study`` before it took the name of its config group and tag, ``ab``.
HASHED_AS = {"ab": "study"}


def identity_hash(identity: dict[str, Any]) -> str:
    """The job's identity as a short hash: its checkpoint folder and its runs' ``config_hash`` tag."""
    return tracking.config_hash({HASHED_AS.get(k, k): v for k, v in identity.items()})


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(tree, dict):
        out: dict[str, str] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(tree) if isinstance(tree, list | tuple) else str(tree)}


def parent_run(cfg: DictConfig) -> str | None:
    """The study's parent run: from the launching process, or (launchers that lose the environment) looked up."""
    if not cfg.get("ab"):
        return None
    if os.environ.get(STUDY_RUN_ENV):
        return os.environ[STUDY_RUN_ENV]
    from hydra.core.hydra_config import HydraConfig

    return study_parent(cfg, HydraConfig.get())


def log_config(mlflow: tracking.Store, run_id: str, identity: dict[str, Any]) -> None:
    """The flattened config as the run's params, in MLflow's batches of 100 and within its length limits."""
    params = [Param(k[:250], v[:6000]) for k, v in flatten(identity).items()]
    for start in range(0, len(params), 100):
        mlflow.log_batch(run_id, params=params[start : start + 100])


def open_run(
    cfg: DictConfig,
    mlflow: tracking.Store,
    exp_id: str,
    identity: dict,
    job_hash: str,
    kind: str = "job",
    owner: str = "",
) -> tuple[str | None, bool]:
    """(run id, resumed?) for this job, claimed for ``owner``; run id None when the job is skipped: a complete run
    exists, or another live process owns the run (``lease.py``). ``kind`` tags the run: ``job`` (a study's or a
    single job) or ``pretrain`` (a base)."""
    existing = tracking.job_runs(mlflow, exp_id, job_hash, kind)
    if any(r.info.status == "FINISHED" and r.data.tags.get("complete") == "1" for r in existing):
        return None, False
    for run in existing:
        if owner_alive(run, owner):
            log.info("job %s is being trained by %s: skipped", job_hash, run.data.tags[OWNER_TAG])
            return None, False
    parent = parent_run(cfg)
    sha, dirty = tracking.git_state()
    tags = {
        "kind": kind,
        "config_hash": job_hash,
        "ab": str(cfg.get("ab") or ""),
        "arm": cfg.loss.arm,
        "seed": str(cfg.seed),
        "git_sha": sha,
        "git_dirty": str(dirty),
        MLFLOW_RUN_NAME: f"{'' if kind == 'job' else kind + '-'}{cfg.loss.arm}-seed{cfg.seed}",
    }
    if parent:
        tags[MLFLOW_PARENT_RUN_ID] = parent
    if existing:
        run_id = existing[0].info.run_id
        if not claim(mlflow, run_id, owner):
            log.info("job %s was claimed by another process at the same moment: skipped", job_hash)
            return None, False
        mlflow.update_run(run_id, status="RUNNING")
        mlflow.set_tags(run_id, tags)
        return run_id, True
    tags |= {OWNER_TAG: owner, HEARTBEAT_TAG: f"{time.time():.0f}"}
    run_id = mlflow.create_run(exp_id, tags=tags).info.run_id
    log_config(mlflow, run_id, identity)
    return run_id, False


def process_rank() -> int:
    """Global rank of this process when a launcher (Lightning DDP, torchrun, SLURM) started several; else 0."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def worker_run(mlflow: tracking.Store, exp_id: str, job_hash: str, timeout: float = 300.0) -> str:
    """A DDP worker (rank > 0) logs into rank 0's run: handed down by the environment, or looked up when a
    cluster launcher started every rank at once."""
    if os.environ.get(JOB_RUN_ENV):
        return os.environ[JOB_RUN_ENV]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [r for r in tracking.job_runs(mlflow, exp_id, job_hash) if r.info.status == "RUNNING"]
        if running:
            return running[0].info.run_id
        time.sleep(2.0)
    raise RuntimeError(f"rank {process_rank()}: no RUNNING MLflow run of job {job_hash} from rank 0 in {timeout} s")


@contextmanager
def ddp_handover(run_id: str, resume_from: Path | None) -> Iterator[None]:
    """What DDP workers started by Lightning need from rank 0, in the environment they inherit: the run id, the
    checkpoint to resume from and, inside a study, this job's own overrides (Lightning re-executes the command
    line, which for a study is the whole sweep; ``experiments.run`` swaps in these overrides)."""
    from hydra.core.hydra_config import HydraConfig

    before = dict(os.environ)
    os.environ.update({JOB_RUN_ENV: run_id, JOB_RESUME_ENV: str(resume_from or "")})
    if HydraConfig.initialized():
        os.environ[JOB_OVERRIDES_ENV] = json.dumps(list(HydraConfig.get().overrides.task))
    try:
        yield
    finally:
        # The next job of the study starts clean: Lightning leaves its rank variables (LOCAL_RANK, WORLD_SIZE,
        # ...) and the process group behind, and would take them for an external launch of the next DDP job.
        for key in set(os.environ) - set(before):
            del os.environ[key]
        os.environ.update(before)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
