"""One trial: the experiment config with the trial's knobs, trained and evaluated by ``experiments.job.fit_and_test``
(the code path of ``experiments.run``) into an MLflow child run whose status and ``trial_state`` follow Optuna's."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import optuna
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from omegaconf import DictConfig
from optuna.trial import FrozenTrial
from optuna_integration.pytorch_lightning import PyTorchLightningPruningCallback

from experiments import tracking
from experiments.build import validate
from experiments.job import fit_and_test
from experiments.job_run import identity_hash, job_identity, log_config

from .space import SweepSpec


class LastValidation(pl.Callback):
    """Keeps the metrics of the last validation epoch: the objectives are read from them after training."""

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}


@dataclass
class TrialContext:
    """What every trial of one worker shares."""

    spec: SweepSpec
    study_name: str
    compose: Callable[[list[str], Path], DictConfig]  # overrides, output dir -> experiment config
    overrides: list[str]  # the sweep's fixed overrides, the command line's, and the training seed
    output_dir: Path
    mlflow: tracking.Store
    uri: str
    experiment_id: str
    parent_run: str


class Objective:
    """``study.optimize``'s objective: one training job, its validation metrics as the objective values."""

    def __init__(self, context: TrialContext):
        self.c = context

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        c = self.c
        cfg = c.compose([*c.overrides, *c.spec.draw(trial)], c.output_dir / f"trial_{trial.number:04d}")
        run_id = self._open_run(cfg, trial)
        trial.set_user_attr("mlflow_run_id", run_id)
        last = LastValidation()
        callbacks: list[pl.Callback] = [last]
        if c.spec.pruner is not None:
            callbacks.append(PyTorchLightningPruningCallback(trial, monitor=c.spec.objectives[0].key))
        try:
            validate(cfg)
            checkpoints = Path(cfg.paths.checkpoints)
            checkpoints.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=f"{c.study_name}-trial{trial.number}-", dir=checkpoints) as ckpt:
                fit_and_test(cfg, c.uri, run_id, Path(ckpt), None, callbacks)  # trials never resume: no checkpoint kept
            values = [self._value(last.metrics, o.key) for o in c.spec.objectives]
        except optuna.TrialPruned as err:
            self._close(run_id, "KILLED", "PRUNED", pruned=str(err))
            raise
        except (KeyboardInterrupt, SystemExit) as err:  # Lightning turns Ctrl-C into SystemExit
            trial.set_user_attr("interrupted", True)
            self._close(run_id, "KILLED", "FAIL", error="interrupted")
            raise KeyboardInterrupt(f"trial {trial.number} interrupted") from err
        except Exception as err:
            message = f"{type(err).__name__}: {err}"[:5000]
            trial.set_user_attr("error", message)  # Optuna keeps no reason for a failure: the dashboard shows this
            self._close(run_id, "FAILED", "FAIL", error=message)
            raise
        self._close(run_id, "FINISHED", "COMPLETE")
        return values[0] if len(values) == 1 else values

    @staticmethod
    def _value(metrics: dict[str, float], key: str) -> float:
        if key not in metrics:
            raise KeyError(f"objective {key} was not logged by the last validation epoch; logged: {sorted(metrics)}")
        if not math.isfinite(metrics[key]):
            raise ValueError(f"objective {key} is {metrics[key]}: the trial cannot be ranked")
        return metrics[key]

    def _open_run(self, cfg: DictConfig, trial: optuna.Trial) -> str:
        c = self.c
        identity = job_identity(cfg)
        sha, dirty = tracking.git_state()
        tags = {
            "kind": "trial",
            "sweep": c.spec.name,
            "optuna_study": c.study_name,
            "trial_number": str(trial.number),
            "trial_state": "RUNNING",
            "trial_params": json.dumps(trial.params, sort_keys=True),
            "arm": cfg.loss.arm,
            "seed": str(cfg.seed),
            "config_hash": identity_hash(identity),
            "git_sha": sha,
            "git_dirty": str(dirty),
            MLFLOW_PARENT_RUN_ID: c.parent_run,
            MLFLOW_RUN_NAME: f"{c.study_name}-trial{trial.number}",
        }
        run_id = c.mlflow.create_run(c.experiment_id, tags=tags).info.run_id
        log_config(c.mlflow, run_id, identity)
        return run_id

    def _close(self, run_id: str, status: str, state: str, **tags: str) -> None:
        close_run(self.c.mlflow, run_id, status, state, **tags)


def close_run(mlflow: tracking.Store, run_id: str, status: str, state: str, **tags: str) -> None:
    """End a trial's MLflow run with its Optuna state as the tag ``trial_state``."""
    mlflow.set_tags(run_id, {"trial_state": state, **tags})
    mlflow.set_terminated(run_id, status)


def close_dead_worker_runs(mlflow: tracking.Store) -> Callable[[optuna.Study, FrozenTrial], None]:
    """For the storage's heartbeat: a trial whose worker died is FAIL in Optuna, and FAILED in MLflow too."""

    def close(study: optuna.Study, trial: FrozenTrial) -> None:
        if "mlflow_run_id" in trial.user_attrs:
            close_run(mlflow, trial.user_attrs["mlflow_run_id"], "FAILED", "FAIL", error="its worker died")

    return close
