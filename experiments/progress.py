"""How far a study is: one line for the whole multirun, from its job runs in MLflow (the jobs run in other
processes, or on other machines, and each reports itself there).

A thread of the study's process reads the parent run's children every few seconds and logs a line whenever a job
starts or ends: jobs finished / running / failed of the total, the time since the study started and an estimate of
what is left from the measured times of the jobs that finished.

In a terminal, with the jobs side by side in processes that share it, the line is live (Rich) and each running
job has a bar under it (its last logged step of its total). Two programs drawing on one terminal tear each other's
lines, so while the display is up (``LIVE_ENV`` set) the jobs keep off the console: their lines go to their own
log files, and the study draws their bars from what they log to MLflow.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass

from mlflow.entities import Run
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from . import tracking

log = logging.getLogger(__name__)
ENDED_BADLY = ("FAILED", "KILLED")
LIVE_ENV = "SPARSE4D_LAB_STUDY_LIVE"  # set while a study draws its live display: its jobs keep off the console
STEPS_TAG = "total_steps"  # a job's training steps, tagged when its training starts
STEP_METRIC = "train/loss"  # logged every few steps: its last step is how far the job is


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


def status(c: Counts, elapsed_s: float) -> str:
    eta = "?" if c.eta_s is None else clock(c.eta_s)
    return f"{c.running} running, {c.failed} failed; elapsed {clock(elapsed_s)}, ETA {eta}"


def line(study: str, c: Counts, elapsed_s: float) -> str:
    return f"study {study}: {c.finished}/{c.total} jobs finished, {status(c, elapsed_s)}"


def live_display(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
        refresh_per_second=2,
    )


class StudyProgress:
    """Watches a study's parent run from a daemon thread; ``stop`` logs the last line. With a ``console`` (a
    terminal) the line is live and the running jobs have bars."""

    def __init__(
        self,
        mlflow: tracking.Store,
        parent: str,
        study: str,
        total: int,
        slots: int,
        interval_s: float = 5,
        console: Console | None = None,
    ):
        self.mlflow, self.parent, self.study, self.total, self.slots = mlflow, parent, study, total, slots
        self.interval_s, self.started = interval_s, time.time()
        self.experiment = mlflow.get_run(parent).info.experiment_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="study-progress", daemon=True)
        self._last: tuple[int, int, int] | None = None
        self.live = live_display(console) if console is not None else None
        self._bars: dict[str, TaskID] = {}  # job run id -> its bar
        self._streams: list[tuple[logging.StreamHandler, object]] = []  # console handlers moved above the display

    def start(self) -> StudyProgress:
        if self.live is not None:
            os.environ[LIVE_ENV] = "1"  # before the launcher starts the job processes, which inherit it
            self.live.start()
            self._log_above_the_display()
            self._study_bar = self.live.add_task(f"study {self.study}", total=self.total, note="jobs finished")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.report(force=True)
        if self.live is not None:
            self.live.stop()
            for handler, stream in self._streams:
                handler.setStream(stream)
            os.environ.pop(LIVE_ENV, None)

    def _log_above_the_display(self) -> None:
        """The study's own log lines (the launcher's, Hydra's) through Rich's redirected streams, which print
        them above the display instead of through it."""
        proxies = {id(sys.__stdout__): sys.stdout, id(sys.__stderr__): sys.stderr}
        for handler in logging.getLogger().handlers:
            if type(handler) is logging.StreamHandler and id(handler.stream) in proxies:
                self._streams.append((handler, handler.setStream(proxies[id(handler.stream)])))

    def report(self, force: bool = False) -> None:
        """Log a line if a job started or ended since the last one (or ``force``); redraw the live display."""
        children = tracking.child_runs(self.mlflow, self.experiment, self.parent)
        runs = [
            (r.info.status, r.info.start_time / 1000, r.info.end_time / 1000 if r.info.end_time else None)
            for r in children
        ]
        c, elapsed = counts(runs, self.total, self.slots, time.time()), time.time() - self.started
        if force or (c.finished, c.running, c.failed) != self._last:
            self._last = (c.finished, c.running, c.failed)
            if self.live is None:
                log.info(line(self.study, c, elapsed))
            else:  # above the display, where it stays in the terminal's scroll-back
                self.live.console.print(line(self.study, c, elapsed), highlight=False)
        if self.live is not None:
            self.live.update(self._study_bar, completed=c.finished, note=f"jobs finished, {status(c, elapsed)}")
            self._draw_jobs([r for r in children if r.info.status == "RUNNING"])

    def _draw_jobs(self, running: list[Run]) -> None:
        """A bar per running job: its arm and seed, its last logged step of its total steps."""
        assert self.live is not None
        for run_id in set(self._bars) - {r.info.run_id for r in running}:
            self.live.remove_task(self._bars.pop(run_id))
        for run in running:
            tags = run.data.tags
            if run.info.run_id not in self._bars:
                label = f"  {tags.get('arm', '?')} seed {tags.get('seed', '?')}"
                self._bars[run.info.run_id] = self.live.add_task(label, total=None, note="steps")
            history = self.mlflow.get_metric_history(run.info.run_id, STEP_METRIC)
            total = int(tags[STEPS_TAG]) if STEPS_TAG in tags else None
            step = max((m.step for m in history), default=0)
            self.live.update(self._bars[run.info.run_id], completed=step, total=total)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.report()
            except Exception as err:  # a store that hiccups must not end the study; the next beat tries again
                log.debug("study progress: %s", err)
