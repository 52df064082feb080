"""``python -m experiments.run +ab=loss_fix``: every arm x seed of a study; without ``+ab``, one job.

Each job trains one Sparse4D arm with Lightning and logs to MLflow (``sqlite:///mlflow.db`` unless configured);
a study ends with its comparison table, printed and logged to its parent run.
"""

from __future__ import annotations

import json
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from . import conf  # noqa: F401  (registers model_schema, which the config files extend)
from .callbacks import stop_on_sigterm
from .resources import JOB_OVERRIDES_ENV

# What Lightning appends when it re-executes the command for a DDP worker.
LIGHTNING_WORKER_ARGS = ("hydra.run.dir=", "hydra.job.name=", "hydra.output_subdir=")


def ddp_worker_argv(argv: list[str], environ: dict[str, str]) -> list[str]:
    """A DDP worker started by Lightning inside a study would re-run the whole sweep: give it its job's
    overrides (handed down by rank 0) as a single run instead."""
    overrides = environ.get(JOB_OVERRIDES_ENV)
    if not overrides or environ.get("LOCAL_RANK", "0") == "0":
        return argv
    appended = [a for a in argv[1:] if a.startswith(LIGHTNING_WORKER_ARGS)]
    return [argv[0], *json.loads(overrides), "hydra.mode=RUN", *appended]


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> dict[str, float] | None:
    from .job import train_job  # Lightning and the model: in the jobs' processes, not in the study's

    stop_on_sigterm()
    # One job alone exits non-zero when it fails; a study's failed jobs make the study exit so at its end.
    return train_job(cfg, raise_failure=HydraConfig.get().mode == RunMode.RUN)


if __name__ == "__main__":
    sys.argv = ddp_worker_argv(sys.argv, dict(os.environ))
    main()
