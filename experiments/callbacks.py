"""Hydra callback around a study: create its MLflow parent run before the jobs, print its table after them."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from . import tracking

log = logging.getLogger(__name__)
STUDY_RUN_ENV = "SPARSE4D_LAB_STUDY_RUN"


def swept(values: Any) -> list[str]:
    """``"a,b,c"`` (a sweeper param) -> ``["a", "b", "c"]``."""
    return [v.strip() for v in str(values).split(",") if v.strip()]


def study_key(study: str, overrides: list[str], swept_keys: set[str]) -> str:
    """Same study command -> same key, whatever the job: the command line without the swept values."""
    fixed = sorted(o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in swept_keys)
    return tracking.config_hash({"study": study, "overrides": fixed})


def study_arms_and_seeds(config: DictConfig) -> tuple[list[str], list[int]]:
    params = config.hydra.sweeper.get("params") or {}
    arms = swept(params["loss"]) if "loss" in params else [config.loss.arm]
    seeds = [int(s) for s in swept(params["seed"])] if "seed" in params else [int(config.seed)]
    return arms, seeds


class StudyCallback(Callback):
    """Before a study's jobs: create the store once and the parent run, whose id the jobs read from the
    environment. After them: the comparison table, printed and logged to the parent run."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.get("study"):
            return
        mlflow = tracking.client(tracking.tracking_uri(config.logger.tracking_uri))
        exp_id = tracking.experiment_id(mlflow, config.logger.experiment)
        params = config.hydra.sweeper.get("params") or {}
        key = study_key(config.study, list(config.hydra.overrides.task), set(params))
        arms, seeds = study_arms_and_seeds(config)
        tags = {"arms": ",".join(arms), "seeds": ",".join(map(str, seeds)), "baseline": str(config.baseline)}
        os.environ[STUDY_RUN_ENV] = tracking.study_run(mlflow, exp_id, config.study, key, tags)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        parent = os.environ.pop(STUDY_RUN_ENV, None)
        if not config.get("study") or parent is None:
            return
        from analysis.report import study_report  # analysis reads MLflow only; imported when a study ends

        out = Path(config.hydra.sweep.dir)
        study_report(tracking.tracking_uri(config.logger.tracking_uri), config.logger.experiment, parent, out)
