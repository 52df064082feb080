"""MLflow bookkeeping of studies: the store, the parent run of a study, and the child run of each job.

A job is identified by the hash of its resolved config (output paths excluded), so re-running a study finds the
jobs it already did: a FINISHED run is skipped, an unfinished one is resumed from its checkpoint into the same run.
SQLite allows one writer at a time: every call goes through ``Store``, whose methods retry while the store is
locked, so concurrent studies never lose a write.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


class Store:
    """The MLflow store as the commands use it: every ``MlflowClient`` method, retried with back-off while SQLite
    is locked, and the steps of a run's life-cycle that take several calls."""

    def __init__(self, mlflow: MlflowClient):
        self.client = mlflow

    def __getattr__(self, name: str) -> Any:
        client = self.__dict__.get("client")  # absent while unpickling: no recursion
        method = getattr(client, name) if client is not None else None
        if not callable(method):
            raise AttributeError(name)
        return functools.wraps(method)(lambda *args, **kwargs: retry(lambda: method(*args, **kwargs)))

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.set_tag(run_id, key, value)

    def finish(self, run_id: str) -> None:
        """FINISHED and ``complete`` (its test ran); an earlier attempt's ``error`` tag is cleared."""
        if "error" in self.get_run(run_id).data.tags:
            self.delete_tag(run_id, "error")
        self.set_tag(run_id, "complete", "1")
        self.set_terminated(run_id, "FINISHED")

    def fail(self, run_id: str, message: str, tag: str = "error") -> None:
        """FAILED, with what went wrong as the ``tag`` tag (MLflow keeps 5000 characters of a tag)."""
        self.set_tag(run_id, tag, message[:5000])
        self.set_terminated(run_id, "FAILED")


def client(uri: str) -> Store:
    """A client whose store exists. Two processes opening a new SQLite file at once would both run its schema
    migration and one would fail, so the first creates it under a lock while the others wait."""
    path = sqlite_file(uri)
    if path is None:
        return Store(MlflowClient(tracking_uri=uri))
    with file_lock(path.with_name(path.name + ".lock")):
        store = Store(MlflowClient(tracking_uri=uri))  # the store (and its schema) is made here
        store.search_experiments(max_results=1)
    return store


# MLflow 3 opens an experiment on its GenAI overview unless it is marked as model training: then on the runs table.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def experiment_id(mlflow: Store, name: str) -> str:
    """Get or create the experiment, marked as model training (creating a fresh SQLite store runs its schema
    migration, once)."""
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


def find_runs(mlflow: Store, exp_id: str, filter_string: str) -> list[Run]:
    return list(mlflow.search_runs([exp_id], filter_string=filter_string, max_results=1000))


# A study run's tags that hold comma lists: the arms and seeds it has run.
LIST_TAGS = ("arms", "seeds")


def study_run(mlflow: Store, exp_id: str, study: str, study_key: str, tags: dict[str, str]) -> str:
    """The parent run of a study, created once per study key (re-running the same command reuses it; run again
    with more seeds or arms, its ``LIST_TAGS`` gain them, so its report expects every run it was asked for)."""
    existing = find_runs(mlflow, exp_id, f"tags.study_key = '{study_key}' and tags.kind = 'study'")
    if existing:
        run_id, old_tags = existing[0].info.run_id, existing[0].data.tags
        for key in LIST_TAGS:
            old = old_tags.get(key, "")
            merged = ",".join(dict.fromkeys(v for v in [*old.split(","), *tags.get(key, "").split(",")] if v))
            if merged != old:
                mlflow.set_tag(run_id, key, merged)
        mlflow.update_run(run_id, status="RUNNING")
        return run_id
    all_tags = {"kind": "study", "ab": study, "study_key": study_key, MLFLOW_RUN_NAME: f"study:{study}", **tags}
    return mlflow.create_run(exp_id, tags=all_tags).info.run_id


def job_runs(mlflow: Store, exp_id: str, job_hash: str, kind: str = "job") -> list[Run]:
    return find_runs(mlflow, exp_id, f"tags.config_hash = '{job_hash}' and tags.kind = '{kind}'")


def child_runs(mlflow: Store, exp_id: str, parent_id: str) -> list[Run]:
    return find_runs(mlflow, exp_id, f"tags.{MLFLOW_PARENT_RUN_ID} = '{parent_id}'")
