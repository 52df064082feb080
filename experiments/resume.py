"""Resuming a job exactly: which checkpoint to resume from, the random streams it carries, and a metric history
that holds each step once.

A job killed after a checkpoint and run again must end bit-identical to the job never interrupted (on CPU). The
weights, optimiser, schedule and loop counters are Lightning's part of a checkpoint; the random streams (torch's,
numpy's, Python's) are ``RandomStates``' part, restored after the job has seeded and built itself. The sampler
needs nothing: its order is a function of the seed and the epoch. Steps the killed process logged after its last
checkpoint are replayed by the resumed one, which logs them again with the same values: ``new_metrics`` (used by
the job's logger) drops those, so each (metric, step) is written once.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from . import tracking

log = logging.getLogger(__name__)


class RandomStates(pl.Callback):
    """Saves the process's random streams into every checkpoint and restores them on resume."""

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        numpy = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos)}
        numpy |= {"has_gauss": int(has_gauss), "cached": float(cached)}  # tensors and numbers: weights_only loads it
        return {"torch": torch.get_rng_state(), "numpy": numpy, "python": random.getstate()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))


def readable_checkpoint(ckpt_dir: Path) -> tuple[Path, int] | None:
    """(path, global step) of the newest checkpoint of a job that loads: ``last.ckpt`` first, then the others,
    newest first. One that does not (a kill while it was written, a full disk) is passed over, with a warning
    naming it; with none readable the job starts over."""
    candidates = sorted(ckpt_dir.glob("*.ckpt"), key=lambda p: (p.name != "last.ckpt", -p.stat().st_mtime))
    for path in candidates:
        try:
            step = int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])
        except Exception as err:
            log.warning("checkpoint %s is unreadable (%s: %.200s): passed over", path, type(err).__name__, err)
            continue
        return path, step
    if candidates:
        log.warning("no checkpoint in %s is readable: the job starts over from its first step", ckpt_dir)
    return None


def logged_steps(mlflow: tracking.Store, run_id: str) -> dict[str, int]:
    """Metric -> the last step the run holds of it."""
    run = mlflow.get_run(run_id)
    return {key: max(m.step for m in mlflow.get_metric_history(run_id, key)) for key in run.data.metrics}


def record_resume(mlflow: tracking.Store, run_id: str, step: int) -> None:
    """Tags: how often the run was resumed (``resumes``) and from which steps (``resumed_from_steps``)."""
    tags = mlflow.get_run(run_id).data.tags
    steps = [s for s in tags.get("resumed_from_steps", "").split(",") if s] + [str(step)]
    mlflow.set_tag(run_id, "resumes", str(len(steps)))
    mlflow.set_tag(run_id, "resumed_from_steps", ",".join(steps))


def new_metrics(metrics: dict[str, float], step: int | None, logged: dict[str, int]) -> dict[str, float]:
    """The metrics of ``step`` the run does not hold yet (a resumed job replays those after its checkpoint)."""
    if step is None:
        return metrics
    return {k: v for k, v in metrics.items() if step > logged.get(k, -1)}
