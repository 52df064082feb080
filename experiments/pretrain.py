"""``python -m experiments.pretrain``: train a base on the source warehouse, then write its weights and provenance.

The base is one long job through the machinery of a study's jobs (``job.train_job``, tag ``kind=pretrain``): killed
and re-run with the same config it resumes from its last checkpoint (one per epoch) into the same MLflow run; a
finished run is not trained again, only written out again. The base is the final weights; the provenance holds
what made them and the learning curve (source-validation mAP and NDS against steps).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from sparse4d_lab.errors import ConfigError
from sparse4d_lab.model.config import ModelConfig
from sparse4d_lab.model.pretrained import PRETRAIN_COMMAND, provenance_path, save_base
from sparse4d_lab.supervision.schemes import build_scheme

from . import conf, tracking  # noqa: F401  (conf registers model_schema, which the config files extend)
from .build import data_source
from .job import train_job
from .job_run import identity_hash, job_identity
from .resources import describe_machine

log = logging.getLogger(__name__)
CURVES = ("val/mAP", "val/NDS")


def guard_out(weights: Path, job_hash: str, overwrite: bool) -> None:
    """Refuse, before any training, to replace a base that another config made (unless told to)."""
    record = provenance_path(weights)
    if overwrite or not record.is_file():
        return
    try:
        existing = json.loads(record.read_text()).get("config_hash")
    except json.JSONDecodeError:
        existing = None
    if existing != job_hash:
        raise ConfigError(
            f"pretrain.out: {weights} is a base of another config (config_hash {existing}, this one {job_hash}); "
            "choose another pretrain.out, or pretrain.overwrite=true to replace it"
        )


def curves(mlflow: tracking.Store, run_id: str) -> dict[str, list[list[float]]]:
    """Each validation metric's history as [step, value] pairs, in step order."""
    out = {}
    for key in CURVES:
        history = mlflow.get_metric_history(run_id, key)
        out[key] = [[int(m.step), round(float(m.value), 6)] for m in sorted(history, key=lambda m: m.step)]
    return out


def provenance(
    cfg: DictConfig, mlflow, run, checkpoint: dict[str, Any], identity: dict, job_hash: str
) -> dict[str, Any]:
    """Everything a reader of the base needs to trust and reproduce it."""
    from hydra.core.hydra_config import HydraConfig

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    source = data_source(cfg)
    metrics = run.data.metrics
    num_classes = len(source.classes)
    return {
        "command": " ".join([PRETRAIN_COMMAND, *overrides]),
        "config_hash": job_hash,
        "mlflow_run_id": run.info.run_id,
        "git_sha": run.data.tags.get("git_sha", "unknown"),
        "git_dirty": run.data.tags.get("git_dirty", "unknown"),
        "machine": describe_machine(),
        "threads": run.data.tags.get("threads"),
        "model": ModelConfig(**OmegaConf.to_container(cfg.model, resolve=True)).to_dict(),
        "classes": list(source.classes),
        "num_logits": build_scheme(cfg.loss.scheme, num_classes, **(cfg.loss.options or {})).num_logits,
        "data": identity["data"],
        "data_digest": tracking.config_hash(identity["data"]),
        "loss": identity["loss"],
        "semantics": identity.get("semantics"),
        "optim": identity["optim"],
        "batch_size": identity["train"]["batch_size"],
        "seed": int(cfg.seed),
        "epochs": int(checkpoint["epoch"]) + 1,
        "steps": int(checkpoint["global_step"]),
        "train_time_s": metrics.get("train_time_s"),
        "source_val": {k.split("/")[1]: metrics.get(k) for k in CURVES},
        "source_test": {k: metrics.get(f"test/{k}") for k in ("mAP", "NDS")},
        "curves": curves(mlflow, run.info.run_id),
    }


def pretrain(cfg: DictConfig) -> dict[str, Any]:
    """Train (or resume) the base, then write ``pretrain.out`` .pt and .json; returns the provenance."""
    weights = Path(cfg.pretrain.out).with_suffix(".pt")
    identity = job_identity(cfg)
    job_hash = identity_hash(identity)
    guard_out(weights, job_hash, bool(cfg.pretrain.overwrite))
    train_job(cfg, kind="pretrain")
    mlflow = tracking.client(tracking.tracking_uri(cfg.logger.tracking_uri))
    exp_id = tracking.experiment_id(mlflow, cfg.logger.experiment)
    runs = [r for r in tracking.job_runs(mlflow, exp_id, job_hash, "pretrain") if r.data.tags.get("complete") == "1"]
    last = Path(cfg.paths.checkpoints) / job_hash / "last.ckpt"
    if not runs or not last.is_file():
        raise RuntimeError(f"pretrain {job_hash}: the run did not complete (see its MLflow run); re-run to resume")
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    record = save_base(state, weights, provenance(cfg, mlflow, runs[0], checkpoint, identity, job_hash))
    log.info("base written: %s (%d bytes, sha256 %s)", weights, record["bytes"], record["sha256"])
    for key, points in record["curves"].items():
        log.info("%s against steps: %s", key, ", ".join(f"{s}: {v:.3f}" for s, v in points))
    return record


@hydra.main(version_base="1.3", config_path="conf", config_name="pretrain")
def main(cfg: DictConfig) -> None:
    try:
        pretrain(cfg)
    except (ConfigError, RuntimeError) as err:
        log.error("%s", err)
        sys.exit(1)


if __name__ == "__main__":
    main()
