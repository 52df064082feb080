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
import subprocess
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from sparse4d_lab.locks import file_lock
from sparse4d_lab.locks import retry_while_locked as retry

log = logging.getLogger(__name__)
DEFAULT_URI = "sqlite:///mlflow.db"


def tracking_uri(configured: str | None) -> str:
    """Config value, else ``MLFLOW_TRACKING_URI``, else the SQLite file in the working directory."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative with three slashes, absolute with four)."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def client(uri: str) -> MlflowClient:
    """A client whose store exists. Two processes opening a new SQLite file at once would both run its schema
    migration and one would fail, so the first creates it under a lock while the others wait."""
    path = sqlite_file(uri)
    if path is None:
        return MlflowClient(tracking_uri=uri)
    with file_lock(path.with_name(path.name + ".lock")):
        mlflow = MlflowClient(tracking_uri=uri)  # the store (and its schema) is made here
        retry(lambda: mlflow.search_experiments(max_results=1))
    return mlflow


# MLflow 3 opens an experiment on its GenAI overview unless it is marked as model training: then on the runs table.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def experiment_id(mlflow: MlflowClient, name: str) -> str:
    """Get or create the experiment, marked as model training (creating a fresh SQLite store runs its schema
    migration, once)."""

    def get_or_create() -> str:
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            try:
                return mlflow.create_experiment(name, tags=EXPERIMENT_KIND)
            except MlflowException:  # another process created it first
                exp = mlflow.get_experiment_by_name(name)
        for key, value in EXPERIMENT_KIND.items():  # an experiment made before the mark (a user's own mark stays)
            if key not in exp.tags:
                mlflow.set_experiment_tag(exp.experiment_id, key, value)
        return exp.experiment_id

    return retry(get_or_create)


def config_hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


CODE_ROOT = Path(__file__).resolve().parents[1]  # the checkout this code runs from


def git_state(root: Path = CODE_ROOT) -> tuple[str, bool]:
    """(commit sha, dirty?) of the code that runs; ("unknown", False) outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=root, capture_output=True, text=True)
        return sha.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def find_runs(mlflow: MlflowClient, exp_id: str, filter_string: str) -> list[Run]:
    return retry(lambda: list(mlflow.search_runs([exp_id], filter_string=filter_string, max_results=1000)))


# A study run's tags that hold comma lists: the arms and seeds it has run.
LIST_TAGS = ("arms", "seeds")


def study_run(mlflow: MlflowClient, exp_id: str, study: str, study_key: str, tags: dict[str, str]) -> str:
    """The parent run of a study, created once per study key (re-running the same command reuses it; run again
    with more seeds or arms, its ``LIST_TAGS`` gain them, so its report expects every run it was asked for)."""
    existing = find_runs(mlflow, exp_id, f"tags.study_key = '{study_key}' and tags.kind = 'study'")
    if existing:
        run_id, old_tags = existing[0].info.run_id, existing[0].data.tags
        for key in LIST_TAGS:
            old = old_tags.get(key, "")
            merged = ",".join(dict.fromkeys(v for v in [*old.split(","), *tags.get(key, "").split(",")] if v))
            if merged != old:
                retry(lambda k=key, m=merged: mlflow.set_tag(run_id, k, m))
        retry(lambda: mlflow.update_run(run_id, status="RUNNING"))
        return run_id
    all_tags = {"kind": "study", "ab": study, "study_key": study_key, MLFLOW_RUN_NAME: f"study:{study}", **tags}
    return retry(lambda: mlflow.create_run(exp_id, tags=all_tags)).info.run_id


def job_runs(mlflow: MlflowClient, exp_id: str, job_hash: str, kind: str = "job") -> list[Run]:
    return find_runs(mlflow, exp_id, f"tags.config_hash = '{job_hash}' and tags.kind = '{kind}'")


def child_runs(mlflow: MlflowClient, exp_id: str, parent_id: str) -> list[Run]:
    return find_runs(mlflow, exp_id, f"tags.{MLFLOW_PARENT_RUN_ID} = '{parent_id}'")
