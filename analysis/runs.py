"""Which MLflow runs a report compares: a study (its parent run), a list of run ids, or a search filter.

Reads MLflow only. A study's rows are its arms in study order with the baseline first, and every (arm, seed) it
planned is expected; an ad-hoc selection has one row per arm (per study and arm when the runs span studies).
Bad input (an unknown study, run id or experiment, a filter that matches nothing) raises ``ReportInputError``
with a message that names the argument and the fix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, TypeVar

from mlflow import MlflowClient
from mlflow.entities import Metric, Run
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

log = logging.getLogger(__name__)
T = TypeVar("T")
PROGRESS_BAR = MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name


class ReportInputError(ValueError):
    """A selection that names nothing in the tracking store; the message says which argument and how to fix it."""


@dataclass
class RunRecord:
    """What a report needs of one job's MLflow run; ``arm`` is the row the run belongs to."""

    arm: str
    seed: int
    status: str
    metrics: dict[str, float]
    error: str = ""
    run_id: str = ""
    study: str = ""
    params: dict[str, str] = field(default_factory=dict)
    end_time: int = 0


@dataclass
class Selection:
    """The runs of one report: rows in order (baseline first) and the (arm, seed) cells that should have a run."""

    title: str
    arms: list[str]
    baseline: str | None
    records: list[RunRecord]
    expected: list[tuple[str, int]]
    parent_id: str | None = None  # the study's parent run, where the report is logged
    primary: list[str] = field(default_factory=list)  # the study's primary outcomes (metric keys)
    command: str | None = None  # the command that reaches the study again (to add seeds)


def record(run: Run, arm: str | None = None) -> RunRecord:
    tags = run.data.tags
    return RunRecord(
        arm=arm or tags.get("arm", "?"),
        seed=int(tags.get("seed", -1)),
        status=run.info.status,
        metrics=dict(run.data.metrics),
        error=tags.get("error", ""),
        run_id=run.info.run_id,
        study=tags.get("ab", ""),
        params=dict(run.data.params),
        end_time=run.info.end_time or 0,
    )


def search_all(mlflow: MlflowClient, experiment_ids: list[str], filter_string: str, order_by=None) -> list[Run]:
    """Every run matching the filter (MLflow pages its answers)."""
    runs: list[Run] = []
    token = None
    while True:
        page = mlflow.search_runs(experiment_ids, filter_string, max_results=1000, order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def experiment_id(mlflow: MlflowClient, name: str) -> str:
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        names = ", ".join(e.name for e in mlflow.search_experiments()) or "none"
        raise ReportInputError(
            f"--experiment {name!r}: no such experiment at {mlflow.tracking_uri} (experiments there: {names}); "
            "pass --experiment or --tracking-uri"
        )
    return exp.experiment_id


def studies(mlflow: MlflowClient, exp_id: str, name: str | None = None) -> list[Run]:
    """Study parent runs, newest first (of one study name, or of any)."""
    where = "tags.kind = 'study'" + (f" and tags.ab = '{name}'" if name else "")
    return search_all(mlflow, [exp_id], where, order_by=["attributes.start_time DESC"])


def latest_study(mlflow: MlflowClient, exp_id: str, name: str | None) -> str:
    """The parent run id of the newest study of that name (or of any study when ``name`` is None)."""
    found = studies(mlflow, exp_id, name)
    if found:
        return found[0].info.run_id
    names = sorted({r.data.tags.get("ab", "?") for r in studies(mlflow, exp_id)})
    known = ", ".join(names) or "none yet"
    what = f"--ab {name!r}: no study of that name" if name else "no study"
    raise ReportInputError(
        f"{what} at {mlflow.tracking_uri} (studies there: {known}); run one with "
        "`python -m experiments.run +ab=NAME` or pass --ab with one of those names, or --runs/--query"
    )


def get_run(mlflow: MlflowClient, run_id: str, argument: str) -> Run:
    try:
        return mlflow.get_run(run_id)
    except MlflowException as err:
        raise ReportInputError(
            f"{argument}: no run with id {run_id!r} at {mlflow.tracking_uri}; copy the id from the MLflow UI "
            "or `mlflow runs list --experiment-id ID`, or check --tracking-uri"
        ) from err


def baseline_first(arms: Sequence[str], baseline: str | None, default: str | None) -> tuple[str | None, list[str]]:
    """(baseline, arms with it first): ``baseline`` (must be an arm), else ``default`` if an arm, else the first."""
    if baseline is not None and baseline not in arms:
        raise ReportInputError(f"--baseline {baseline!r} is none of the selected arms ({', '.join(arms)})")
    chosen = baseline or (default if default in arms else next(iter(arms), None))
    return chosen, ([chosen] if chosen else []) + [a for a in arms if a != chosen]


def select_study(mlflow: MlflowClient, parent_id: str, baseline: str | None = None) -> Selection:
    """A study's runs: its arms (tag ``arms``, study order) with the baseline (``baseline``, else the tag, else the
    first arm) first, and every planned (arm, seed) expected."""
    parent = get_run(mlflow, parent_id, "--parent")
    tags = parent.data.tags
    if tags.get("kind") != "study":
        raise ReportInputError(
            f"--parent {parent_id!r} is not a study's parent run (tag kind={tags.get('kind')!r}); "
            "pass job runs with --runs instead"
        )
    children = search_all(mlflow, [parent.info.experiment_id], f"tags.{MLFLOW_PARENT_RUN_ID} = '{parent_id}'")
    records = [record(r) for r in children]
    arms = [a for a in tags.get("arms", "").split(",") if a] or sorted({r.arm for r in records})
    seeds = [int(s) for s in tags.get("seeds", "").split(",") if s] or sorted({r.seed for r in records})
    baseline, arms = baseline_first(arms, baseline, tags.get("baseline"))
    study = tags.get("ab", parent_id[:8])
    return Selection(
        study, arms, baseline, records, list(product(arms, seeds)), parent_id,
        primary=[m for m in tags.get("primary", "").split(",") if m],
        command=tags.get("command", f"python -m experiments.run +ab={study}"),
    )  # fmt: skip


def select_runs(mlflow: MlflowClient, runs: Sequence[Run], baseline: str | None, argument: str) -> Selection:
    """An ad-hoc comparison of job runs (a study's parent run stands for its jobs)."""
    jobs: list[Run] = []
    for run in runs:
        if run.data.tags.get("kind") == "study":
            where = f"tags.{MLFLOW_PARENT_RUN_ID} = '{run.info.run_id}'"
            jobs.extend(search_all(mlflow, [run.info.experiment_id], where))
        else:
            jobs.append(run)
    if not jobs:
        raise ReportInputError(f"{argument}: the selection holds no job runs; check the ids or the filter")
    by_study = len({r.data.tags.get("ab", "") for r in jobs}) > 1
    records = [
        record(r, f"{r.data.tags.get('ab') or '-'}/{r.data.tags.get('arm', '?')}" if by_study else None) for r in jobs
    ]
    baseline, arms = baseline_first(list(dict.fromkeys(r.arm for r in records)), baseline, None)
    key = hashlib.sha1(json.dumps(sorted(r.run_id for r in records)).encode()).hexdigest()[:8]
    expected = list(dict.fromkeys((r.arm, r.seed) for r in records))
    return Selection(f"compare-{key}", arms, baseline, records, expected)


def select_run_ids(mlflow: MlflowClient, run_ids: Sequence[str], baseline: str | None) -> Selection:
    return select_runs(mlflow, [get_run(mlflow, i, "--runs") for i in run_ids], baseline, "--runs")


def select_query(mlflow: MlflowClient, exp_id: str, filter_string: str, baseline: str | None) -> Selection:
    """Job runs matching an MLflow filter, e.g. ``tags.arm = 'paq'``."""
    try:
        runs = search_all(mlflow, [exp_id], f"{filter_string} and tags.kind = 'job'")  # the grammar is AND only
    except MlflowException as err:
        raise ReportInputError(f"--query {filter_string!r} is not a valid MLflow filter: {err.message}") from err
    if not runs:
        raise ReportInputError(
            f"--query {filter_string!r} matched no job runs in this experiment; loosen it (e.g. tags.arm = 'paq')"
        )
    return select_runs(mlflow, runs, baseline, "--query")


class Artifacts:
    """Artifacts and metric histories of runs, downloaded and parsed once (in a temporary folder).

    A missing artifact is ``None`` with a logged warning: a report goes on without it.
    """

    def __init__(self, mlflow: MlflowClient):
        self.mlflow = mlflow
        self._tmp = tempfile.TemporaryDirectory(prefix="sparse4d_lab_report_")
        self._loaded: dict[tuple[str, str], Any] = {}
        self._progress_bar = os.environ.get(PROGRESS_BAR)

    def __enter__(self) -> Artifacts:
        os.environ[PROGRESS_BAR] = "false"  # one bar per small file would drown the report
        return self

    def __exit__(self, *exc: Any) -> None:
        self._tmp.cleanup()
        if self._progress_bar is None:
            os.environ.pop(PROGRESS_BAR, None)
        else:
            os.environ[PROGRESS_BAR] = self._progress_bar

    def load(self, run_id: str, name: str, reader: Callable[[Path], T]) -> T | None:
        """``reader(local copy)`` of the run's artifact ``name``, or None when the run has no such artifact."""
        if (run_id, name) not in self._loaded:
            dst = Path(self._tmp.name) / run_id
            dst.mkdir(exist_ok=True)
            try:
                local = Path(self.mlflow.download_artifacts(run_id, name, str(dst)))
            except (MlflowException, OSError) as err:
                log.warning("run %s has no artifact %s (%s)", run_id, name, err)
                local = None
            self._loaded[run_id, name] = reader(local) if local else None
        return self._loaded[run_id, name]

    def evaluation(self, run_id: str) -> dict[str, Any] | None:
        """The run's ``evaluation.json`` (the test pass's full report)."""
        return self.load(run_id, "evaluation.json", lambda path: json.loads(path.read_text()))

    def history(self, run_id: str, key: str) -> list[Metric]:
        return self.mlflow.get_metric_history(run_id, key)
