"""One job of a study: train one arm with one seed, evaluate it, and keep the MLflow run in step with reality.

Re-running a job whose run FINISHED (and completed its test) skips it; an unfinished run is resumed from the job's
newest readable checkpoint into the same MLflow run, exactly (``resume.py``). Any exception marks the run FAILED
with the error and returns, so the rest of the study goes on; Ctrl-C marks it KILLED.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EMAWeightAveraging, LambdaCallback, ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.entities import Metric
from omegaconf import DictConfig, OmegaConf

from sparse4d_lab.lit import Sparse4DModule

from . import tracking
from .build import build_components, validate
from .checks import require_writable
from .job_run import JOB_RESUME_ENV, ddp_handover, identity_hash, job_identity, open_run, process_rank, worker_run
from .lease import claim_lock, heartbeat, new_owner
from .progress import LIVE_ENV, STEPS_TAG
from .quiet import JobProgressBar, quiet_third_parties
from .resources import cpu_ranks, share_cores
from .resume import RandomStates, logged_steps, new_metrics, readable_checkpoint, record_resume

log = logging.getLogger(__name__)


class JobFailed(RuntimeError):
    """A job's training or test failed; its MLflow run is FAILED with the error as its ``error`` tag."""


def train_job(cfg: DictConfig, kind: str = "job", raise_failure: bool = False) -> dict[str, float] | None:
    """Run one job; returns its test metrics, or None if it was skipped or failed (a failure is in MLflow, and
    with ``raise_failure`` raised as JobFailed: a job run alone must exit non-zero, one in a study must not stop
    the others)."""
    quiet_third_parties()
    validate(cfg)
    identity = job_identity(cfg)
    job_hash = identity_hash(identity)
    ckpt_dir = Path(cfg.paths.checkpoints) / job_hash
    require_writable(ckpt_dir, "paths.checkpoints")
    require_writable(Path(cfg.paths.output_dir), "paths.output_dir")
    uri = tracking.tracking_uri(cfg.logger.tracking_uri)
    mlflow = tracking.client(uri)
    exp_id = tracking.experiment_id(mlflow, cfg.logger.experiment)
    if process_rank() > 0:  # rank 0 owns the run's status; a worker only trains
        resume = os.environ.get(JOB_RESUME_ENV)
        return fit_and_test(cfg, uri, worker_run(mlflow, exp_id, job_hash), ckpt_dir, Path(resume) if resume else None)
    with claim_lock(uri):
        run_id, resumed = open_run(cfg, mlflow, exp_id, identity, job_hash, kind, new_owner())
    if run_id is None:
        log.info("job %s (%s seed %s) finished or owned elsewhere: skipped", job_hash, cfg.loss.arm, cfg.seed)
        return None
    found = readable_checkpoint(ckpt_dir) if resumed else None
    resume_from = found[0] if found else None
    if found:
        record_resume(mlflow, run_id, found[1])
    logged = logged_steps(mlflow, run_id) if resumed else {}
    try:
        with ddp_handover(run_id, resume_from), heartbeat(mlflow, run_id):
            metrics = fit_and_test(cfg, uri, run_id, ckpt_dir, resume_from, logged=logged)
    except (KeyboardInterrupt, SystemExit):
        mlflow.set_terminated(run_id, "KILLED")
        raise
    except Exception as err:
        log.exception("job %s (%s seed %s) failed", job_hash, cfg.loss.arm, cfg.seed)
        message = f"{type(err).__name__}: {err}"[:5000]
        mlflow.fail(run_id, message)
        if raise_failure:
            raise JobFailed(f"job {job_hash} ({cfg.loss.arm} seed {cfg.seed}) failed: {message}") from err
        return None
    mlflow.finish(run_id)
    return metrics


def init_tags(module: Sparse4DModule) -> dict[str, str]:
    """What the job's weights started from, as run tags."""
    report = module.init_report
    if report is None:
        return {"init": "scratch"}
    return {
        "init": "pretrained",
        "init_path": report.path,
        "init_sha256": report.sha256,
        "init_loaded": str(len(report.loaded)),
        "init_reinitialised": report.reason or "none",
        "init_fresh": ", ".join(report.fresh_parts) or "none",
    }


class JobLogger(MLFlowLogger):
    """Lightning's MLflow logger, except that the job (or sweep trial), not Lightning, ends its run: Lightning marks
    the run FINISHED before the test and FAILED on a Ctrl-C, and joblib may kill the worker before the job can
    correct that to KILLED. Resumed, it leaves out the steps the run already holds (``logged``: metric -> last
    step), which the job replays from its checkpoint."""

    def __init__(self, *args: Any, logged: dict[str, int] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.logged = logged or {}

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        metrics = new_metrics(metrics, step, self.logged)
        if metrics:
            super().log_metrics(metrics, step)

    def finalize(self, status: str = "success") -> None:
        """Nothing to end: every metric is already written, and the run's status is the job's to set."""


def fit_and_test(
    cfg: DictConfig,
    uri: str,
    run_id: str,
    ckpt_dir: Path,
    resume_from: Path | None,
    callbacks: Sequence[pl.Callback] = (),
    logged: dict[str, int] | None = None,
) -> dict[str, float]:
    """Train and test one job into an existing MLflow run; ``callbacks`` join the trainer's (e.g. a pruner),
    ``logged`` holds the last step of each metric the run has (a resumed job's replayed steps are left out)."""
    quiet_third_parties()  # also for a sweep's trials, which come here directly
    threads = share_cores(cfg.threads, cpu_ranks(cfg.trainer))
    pl.seed_everything(int(cfg.seed), workers=True)
    datamodule, module = build_components(cfg)
    logger = JobLogger(experiment_name=cfg.logger.experiment, tracking_uri=uri, run_id=run_id, logged=logged)
    store = tracking.Store(logger.experiment)  # the logger's own client, its calls retried
    store.set_tags(run_id, {"threads": str(threads), **init_tags(module)})  # the floats depend on the threads
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=1)  # no monitor: the newest
    callbacks = [checkpoint, RandomStates(), tag_total_steps(store, run_id), *callbacks]
    live = bool(os.environ.get(LIVE_ENV))  # the study draws this job's bar (and the job is off the console)
    if not live:
        callbacks.append(JobProgressBar(f"{cfg.loss.arm} seed {cfg.seed}"))
    if cfg.train.get("ema_decay") is not None:
        callbacks.append(weight_average(float(cfg.train.ema_decay), int(cfg.optim.warmup_steps)))
    trainer_args = {k: v for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items() if v is not None}
    trainer = pl.Trainer(
        **trainer_args,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=cfg.paths.output_dir,
        enable_model_summary=False,
        enable_progress_bar=not live,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None, weights_only=True)
    train_time = time.perf_counter() - start
    trainer.test(module, datamodule=datamodule, verbose=False)
    metrics = {f"test/{k}": float(v) for k, v in module.last_metrics.get("test", {}).items()}
    metrics["train_time_s"] = train_time
    if trainer.is_global_zero:
        _log_artifacts(cfg, store, run_id, module, last=ckpt_dir / "last.ckpt", train_time=train_time)
    return metrics


def tag_total_steps(store: tracking.Store, run_id: str) -> LambdaCallback:
    """The job's training steps as a run tag: its bar in the study's live display runs to it."""

    def tag(trainer: pl.Trainer, _: pl.LightningModule) -> None:
        total = trainer.estimated_stepping_batches
        if trainer.is_global_zero and math.isfinite(total):
            store.set_tag(run_id, STEPS_TAG, str(int(total)))

    return LambdaCallback(on_train_start=tag)


def weight_average(decay: float, warmup_steps: int) -> EMAWeightAveraging:
    """An EMA of the weights from the end of warm-up on: validation and test see it, the checkpoints hold it (and the
    current weights, to resume), and the trained module ends as it. It smooths the epoch-to-epoch swings of a long
    run; the early weights of warm-up would only drag it back."""
    return EMAWeightAveraging(decay=decay, update_starting_at_step=warmup_steps)


def _log_artifacts(
    cfg: DictConfig, client: tracking.Store, run_id: str, module: Sparse4DModule, last: Path, train_time: float
) -> None:
    client.log_batch(run_id, metrics=[Metric("train_time_s", train_time, 0, 0)])
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    for path in [out / "config.yaml", *module.collector.write_artifacts(out)]:
        client.log_artifact(run_id, str(path))
    if cfg.logger.log_checkpoint and last.exists():
        client.log_artifact(run_id, str(last), "checkpoints")
