"""How far a study is: one line for the whole multirun, from its job runs in MLflow (the jobs run in other
processes, or on other machines, and each reports itself there).

A thread of the study's process reads the parent run's children every few seconds and logs a line whenever a job
starts or ends: jobs finished / running / failed of the total, the time since the study started and an estimate of
what is left from the measured times of the jobs that finished.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from . import tracking

log = logging.getLogger(__name__)
ENDED_BADLY = ("FAILED", "KILLED")


@dataclass(frozen=True)
class Counts:
    total: int
    finished: int
    running: int
    failed: int
    eta_s: float | None  # None until a job has finished (no measured job time yet)


def counts(runs: list[tuple[str, float, float | None]], total: int, slots: int, now: float) -> Counts:
    """``runs``: (status, start s, end s or None) of the study's job runs. The estimate spreads the work left (the
    mean finished job's time for each job not started, what remains of it for each running one) over ``slots``."""
    finished = [end - start for status, start, end in runs if status == "FINISHED" and end is not None]
    running = [now - start for status, start, _ in runs if status == "RUNNING"]
    failed = sum(status in ENDED_BADLY for status, _, _ in runs)
    eta = None
    if finished:
        mean = sum(finished) / len(finished)
        queued = max(0, total - len(finished) - len(running) - failed)
        eta = (queued * mean + sum(max(0.0, mean - age) for age in running)) / max(1, slots)
    return Counts(total, len(finished), len(running), failed, eta)


def clock(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}" if minutes >= 60 else f"{minutes}:{s:02d}"


def line(study: str, c: Counts, elapsed_s: float) -> str:
    eta = "?" if c.eta_s is None else clock(c.eta_s)
    return (
        f"study {study}: {c.finished}/{c.total} jobs finished, {c.running} running, {c.failed} failed; "
        f"elapsed {clock(elapsed_s)}, ETA {eta}"
    )


class StudyProgress:
    """Watches a study's parent run from a daemon thread; ``stop`` logs the last line."""

    def __init__(self, mlflow: tracking.Store, parent: str, study: str, total: int, slots: int, interval_s: float = 5):
        self.mlflow, self.parent, self.study, self.total, self.slots = mlflow, parent, study, total, slots
        self.interval_s, self.started = interval_s, time.time()
        self.experiment = mlflow.get_run(parent).info.experiment_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="study-progress", daemon=True)
        self._last: tuple[int, int, int] | None = None

    def start(self) -> StudyProgress:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.report(force=True)

    def report(self, force: bool = False) -> None:
        """Log a line if a job started or ended since the last one (or ``force``)."""
        runs = [
            (r.info.status, r.info.start_time / 1000, r.info.end_time / 1000 if r.info.end_time else None)
            for r in tracking.child_runs(self.mlflow, self.experiment, self.parent)
        ]
        c = counts(runs, self.total, self.slots, time.time())
        if force or (c.finished, c.running, c.failed) != self._last:
            self._last = (c.finished, c.running, c.failed)
            log.info(line(self.study, c, time.time() - self.started))

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.report()
            except Exception as err:  # a store that hiccups must not end the study; the next beat tries again
                log.debug("study progress: %s", err)
