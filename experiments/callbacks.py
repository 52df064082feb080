"""Hydra callback around a study: create its MLflow parent run before the jobs, print its table after them."""

from __future__ import annotations

import atexit
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from omegaconf import DictConfig
from rich.console import Console

from sparse4d_lab.errors import ConfigError

from . import tracking
from .progress import StudyProgress
from .resources import MULTIRUN_JOBS_ENV, launcher_jobs, uses_ddp

STUDY_RUN_ENV = "SPARSE4D_LAB_STUDY_RUN"


def sweep_values(hydra: DictConfig) -> dict[str, list[str]]:
    """Each key a multirun sets -> its values, combined as Hydra's basic sweeper does: the study file's
    ``hydra.sweeper.params`` first, then the command line, whose list for a key replaces the file's."""
    params = [f"{key}={value}" for key, value in (hydra.sweeper.get("params") or {}).items()]
    values = {}
    for override in OverridesParser.create().parse_overrides([*params, *hydra.overrides.task]):
        swept = override.is_sweep_override()
        values[override.key_or_group] = (
            list(override.sweep_string_iterator()) if swept else [override.get_value_element_as_str()]
        )
    return values


# Keys that change only what a study's end draws: neither a job's identity nor which study a command reaches.
REPORT_KEYS = ("figures",)


def fixed_overrides(overrides: list[str], swept_keys: set[str]) -> list[str]:
    """The command line without the swept values and the report's own keys: what every job of one study shares."""
    left_out = swept_keys | set(REPORT_KEYS)
    return sorted(o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in left_out)


def study_key(study: str, overrides: list[str], swept_keys: set[str]) -> str:
    """Same study command -> same key, whatever the job."""
    return tracking.config_hash({"study": study, "overrides": fixed_overrides(overrides, swept_keys)})


def study_parent(cfg: DictConfig, hydra: DictConfig) -> str:
    """Get or create the parent run of the study that ``cfg`` (a job's or the sweep's config, with ``hydra``
    its Hydra node) belongs to; the same study command always finds the same run."""
    mlflow = tracking.client(tracking.tracking_uri(cfg.logger.tracking_uri))
    exp_id = tracking.experiment_id(mlflow, cfg.logger.experiment)
    params = hydra.sweeper.get("params") or {}
    values = sweep_values(hydra)
    arms, seeds = values.get("loss", [cfg.loss.arm]), values.get("seed", [str(cfg.seed)])
    tags = {"arms": ",".join(arms), "seeds": ",".join(seeds), "baseline": str(cfg.baseline)}
    tags["primary"] = ",".join(cfg.get("primary") or [])
    # The command that reaches this study again (with other seeds or arms appended: the same parent run).
    tags["command"] = " ".join(["python -m experiments.run", *fixed_overrides(list(hydra.overrides.task), set(params))])
    key = study_key(cfg.ab, list(hydra.overrides.task), set(params))
    return tracking.study_run(mlflow, exp_id, cfg.ab, key, tags)


def stop_on_sigterm() -> None:
    """SIGTERM (``kill``, systemd, SLURM) stops this process as Ctrl-C does: a job marks its run KILLED, a study
    stops its workers and marks itself and its running jobs KILLED; the next run resumes them. A second SIGTERM
    ends the process at once."""

    def interrupt(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


# Launchers whose jobs run in this process or in worker processes that die with it.
LOCAL_LAUNCHERS = ("BasicLauncher", "JoblibLauncher")


def mark_killed_if_unfinished(mlflow: tracking.Store, parent: str, jobs_too: bool) -> None:
    """At exit: a study that never reached its end (Ctrl-C, a fatal error) is KILLED, not left RUNNING; with
    ``jobs_too``, so are its jobs still RUNNING (joblib kills its workers before they can say so themselves)."""
    if os.environ.get(STUDY_RUN_ENV) != parent:
        return
    mlflow.set_terminated(parent, "KILLED")
    if jobs_too:
        parent_run = mlflow.get_run(parent)
        query = f"tags.{MLFLOW_PARENT_RUN_ID} = '{parent}' and attributes.status = 'RUNNING'"
        for run in mlflow.search_runs([parent_run.info.experiment_id], query):
            mlflow.set_terminated(run.info.run_id, "KILLED")


class StudyCallback(Callback):
    """Before a study's jobs: create the store once and the parent run, whose id the jobs read from the
    environment. After them: the comparison table, printed and logged to the parent run."""

    progress: StudyProgress | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Launchers ship the callbacks to the job processes: the progress watcher stays in the study's process."""
        return {k: v for k, v in self.__dict__.items() if k != "progress"}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if uses_ddp(config.trainer) and launcher_jobs(config.hydra.launcher) != 1:
            # Lightning starts a DDP job's other ranks by re-running the command line, which a joblib worker lacks.
            raise ConfigError(
                "trainer=ddp: DDP jobs start their own processes and cannot run side by side; "
                "add hydra/launcher=basic (one job after another) or hydra/launcher=slurm"
            )
        stop_on_sigterm()
        # One job (or fewer than n_jobs) must not keep the cores joblib would have shared among n_jobs.
        total = math.prod(len(v) for v in sweep_values(config.hydra).values())
        os.environ[MULTIRUN_JOBS_ENV] = str(total)
        if not config.get("ab"):
            return
        parent = study_parent(config, config.hydra)
        os.environ[STUDY_RUN_ENV] = parent
        mlflow = tracking.client(tracking.tracking_uri(config.logger.tracking_uri))
        local = config.hydra.launcher._target_.endswith(LOCAL_LAUNCHERS)
        atexit.register(mark_killed_if_unfinished, mlflow, parent, jobs_too=local)
        slots = launcher_jobs(config.hydra.launcher) if local else total  # a cluster runs them all at once
        # Live in a terminal when the jobs run in processes beside this one; plain lines otherwise (a log, or
        # hydra/launcher=basic, whose job in this process draws its own bar).
        joblib = config.hydra.launcher._target_.endswith("JoblibLauncher")
        console = Console(stderr=True) if joblib and sys.stderr.isatty() else None
        self.progress = StudyProgress(mlflow, parent, config.ab, total, slots, console=console).start()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.get("ab"):
            return
        if self.progress is not None:
            self.progress.stop()
        parent = os.environ.pop(STUDY_RUN_ENV, None) or study_parent(config, config.hydra)
        from analysis.report import study_report  # analysis reads MLflow only; imported when a study ends

        out = Path(config.hydra.sweep.dir)
        uri = tracking.tracking_uri(config.logger.tracking_uri)
        study_report(uri, parent, out, figures=config.figures)
        fail_if_jobs_failed(tracking.client(uri), parent)


def fail_if_jobs_failed(mlflow: tracking.Store, parent: str) -> None:
    """A study with a FAILED job is FAILED (tag ``failed_jobs``: arm, seed and run of each) and exits non-zero, so
    scripts and CI notice; its table is written first either way."""
    parent_run = mlflow.get_run(parent)
    children = tracking.child_runs(mlflow, parent_run.info.experiment_id, parent)
    failed = [r for r in children if r.info.status == "FAILED"]
    if not failed:
        return
    names = sorted(f"{r.data.tags.get('arm')} seed {r.data.tags.get('seed')} ({r.info.run_id})" for r in failed)
    mlflow.fail(parent, "; ".join(names), tag="failed_jobs")
    raise SystemExit(f"study {parent_run.data.tags.get('ab')}: {len(failed)} job(s) FAILED: {'; '.join(names)}")
