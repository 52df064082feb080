"""``python -m experiments.run +ab=loss_fix``: every arm x seed of a study; without ``+ab``, one job.

Each job trains one Sparse4D arm with Lightning and logs to MLflow (``sqlite:///mlflow.db`` unless configured);
a study ends with its comparison table, printed and logged to its parent run.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from .job import train_job


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> dict[str, float] | None:
    return train_job(cfg)


if __name__ == "__main__":
    main()
