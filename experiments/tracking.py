"""MLflow bookkeeping of studies: the store, the parent run of a study, and the child run of each job.

A job is identified by the hash of its resolved config (output paths excluded), so re-running a study finds the
jobs it already did: a FINISHED run is skipped, an unfinished one is resumed from its checkpoint into the same run.
SQLite allows one writer at a time; every write goes through ``retry`` so concurrent studies never lose a write.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_URI = "sqlite:///mlflow.db"


def tracking_uri(configured: str | None) -> str:
    """Config value, else ``MLFLOW_TRACKING_URI``, else the SQLite file in the working directory."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def retry(fn: Callable[[], T], attempts: int = 8) -> T:
    """Call ``fn``, retrying with jittered back-off while SQLite reports the database locked."""
    for attempt in range(attempts):
        try:
            return fn()
        except (MlflowException, OperationalError) as err:
            if "locked" not in str(err).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.2 * 2**attempt * (0.5 + random.random()))
    raise AssertionError("unreachable")


def client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri)


def experiment_id(mlflow: MlflowClient, name: str) -> str:
    """Get or create the experiment (creating a fresh SQLite store runs its schema migration, once)."""

    def get_or_create() -> str:
        exp = mlflow.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return mlflow.create_experiment(name)
        except MlflowException:  # another process created it first
            return mlflow.get_experiment_by_name(name).experiment_id

    return retry(get_or_create)


def config_hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def git_state(root: Path) -> tuple[str, bool]:
    """(commit sha, dirty?) of the code that runs; ("unknown", False) outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=root, capture_output=True, text=True)
        return sha.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def find_runs(mlflow: MlflowClient, exp_id: str, filter_string: str) -> list[Run]:
    return retry(lambda: list(mlflow.search_runs([exp_id], filter_string=filter_string, max_results=1000)))


def study_run(mlflow: MlflowClient, exp_id: str, study: str, study_key: str, tags: dict[str, str]) -> str:
    """The parent run of a study, created once per study key (re-running the same command reuses it)."""
    existing = find_runs(mlflow, exp_id, f"tags.study_key = '{study_key}' and tags.kind = 'study'")
    if existing:
        run_id = existing[0].info.run_id
        retry(lambda: mlflow.update_run(run_id, status="RUNNING"))
        return run_id
    all_tags = {"kind": "study", "ab": study, "study_key": study_key, MLFLOW_RUN_NAME: f"study:{study}", **tags}
    return retry(lambda: mlflow.create_run(exp_id, tags=all_tags)).info.run_id


def job_runs(mlflow: MlflowClient, exp_id: str, job_hash: str) -> list[Run]:
    return find_runs(mlflow, exp_id, f"tags.config_hash = '{job_hash}' and tags.kind = 'job'")


def child_runs(mlflow: MlflowClient, exp_id: str, parent_id: str) -> list[Run]:
    return find_runs(mlflow, exp_id, f"tags.{MLFLOW_PARENT_RUN_ID} = '{parent_id}'")
