"""Where a study lives and how its workers share it: the Optuna RDB storage, a lock under which a worker counts the
study's trials and claims the next one (so N workers stop at exactly ``n_trials``), and a sampler seeded per trial."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from sparse4d_lab.locks import file_lock

log = logging.getLogger(__name__)


def storage(
    url: str, heartbeat_s: int | None, on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None
) -> optuna.storages.RDBStorage:
    """The study's RDB storage. With a heartbeat, a trial whose worker died (killed, machine lost) is marked FAIL
    (and ``on_stale`` called) when a worker next starts, instead of staying RUNNING forever."""
    sqlite = sqlalchemy.make_url(url).get_backend_name() == "sqlite"
    return optuna.storages.RDBStorage(
        url,
        engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else None,  # wait for a busy SQLite file, not 5 s
        heartbeat_interval=heartbeat_s,
        heartbeat_stale_trial_callback=on_stale,
    )


def display_url(url: str) -> str:
    """The storage URL as logged: password hidden, a relative SQLite path made absolute (it names one file)."""
    parsed = sqlalchemy.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        parsed = parsed.set(database=str(Path(parsed.database).resolve()))
    return parsed.render_as_string(hide_password=True)


class StudyLock:
    """Exclusive among the workers of one study, across processes: a lock file beside a SQLite database (one
    machine), a PostgreSQL advisory lock (many machines). ``release`` is idempotent, so the objective can release
    it as soon as its trial exists while the loop still releases it if no trial started."""

    def __init__(self, url: str, study_name: str):
        parsed = sqlalchemy.make_url(url)
        self.backend = parsed.get_backend_name()
        self._url, self._file = url, None
        self._key = int(hashlib.sha256(study_name.encode()).hexdigest()[:15], 16)  # fits a signed 64-bit key
        self._held: ExitStack | None = None
        if self.backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
            self._file = Path(f"{parsed.database}.lock")
        elif self.backend not in ("sqlite", "postgresql"):
            log.warning("no cross-process lock for %s storage: concurrent workers may overshoot n_trials", self.backend)

    def acquire(self) -> None:
        if self._held is not None:
            return
        held = ExitStack()
        if self._file is not None:
            held.enter_context(file_lock(self._file))
        elif self.backend == "postgresql":
            held.enter_context(self._advisory_lock())
        self._held = held

    def release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.close()

    @contextmanager
    def _advisory_lock(self) -> Iterator[None]:
        engine = sqlalchemy.create_engine(self._url, poolclass=sqlalchemy.NullPool)
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self._key})
            connection.commit()
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
                connection.commit()

    def __enter__(self) -> StudyLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def counted(trial: FrozenTrial) -> bool:
    """Trials that count towards ``n_trials``: all but those interrupted by the user (Ctrl-C), which a re-run
    replaces."""
    return not (trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted"))


class TrialSeededSampler(BaseSampler):
    """Draws trial k with a fresh sampler seeded ``seed + k``. One worker replays the same sweep; concurrent
    workers, all started with the same seed, do not draw the same points from the same random stream (which a
    single seeded sampler per worker would do, proposing duplicate trials)."""

    def __init__(self, make: Callable[[int], BaseSampler], seed: int):
        self._make, self._seed = make, seed
        self._inner = make(seed)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._inner = self._make(self._seed + trial.number)
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


def claim(study: optuna.Study, lock: StudyLock, n_trials: int) -> bool:
    """Take the lock and say whether this worker may start a trial: a waiting one (queued, or left by a worker that
    died before starting it) or a new one while the study holds fewer than ``n_trials``. On True the lock stays
    held until the trial exists, so two workers never both take the last slot."""
    lock.acquire()
    trials = [t for t in study.get_trials(deepcopy=False) if counted(t)]
    if any(t.state == TrialState.WAITING for t in trials) or len(trials) < n_trials:
        return True
    lock.release()
    return False


def work(
    study: optuna.Study, lock: StudyLock, objective: Callable[[optuna.Trial], Any], n_trials: int, max_failed: float
) -> tuple[str, int]:
    """This worker's share of the study: trials one by one until the study holds ``n_trials`` (every worker and
    re-run counts towards it), or more than ``max_failed`` of them failed. Returns (parent run status, failures);
    a failing trial is recorded as FAIL and the loop goes on."""

    def released_first(trial: optuna.Trial) -> Any:
        lock.release()  # the trial exists: other workers may claim theirs while this one runs
        return objective(trial)

    failed = 0
    try:
        while claim(study, lock, n_trials):
            study.optimize(released_first, n_trials=1, catch=(Exception,), gc_after_trial=True)
            lock.release()  # if no trial started
            failed = sum(t.state == TrialState.FAIL and counted(t) for t in study.get_trials(deepcopy=False))
            if failed > max_failed:
                return "FAILED", failed
    finally:
        lock.release()
    return "FINISHED", failed
