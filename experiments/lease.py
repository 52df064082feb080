"""One owner per run: a job's MLflow run carries its owner and a heartbeat, so a second process (another folder,
another machine on the same store) skips a job whose owner is alive and takes over only a dead one.

The owner is ``host:pid:token``; a daemon thread refreshes the ``heartbeat`` tag (Unix time) every
``HEARTBEAT_S``. An owner is dead when its heartbeat is older than ``STALE_AFTER`` heartbeats, or at once when it
ran on this host and its process is gone (a job killed with SIGKILL and re-run here resumes without waiting).
Claims on a local SQLite store are taken under the store's file lock; on a server, a claim is read back and the
later writer wins, the other steps aside.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

from mlflow.entities import Run

from sparse4d_lab.locks import file_lock

from . import tracking

HEARTBEAT_S = 30.0
STALE_AFTER = 3  # heartbeats missed before an owner on another host counts as dead
OWNER_TAG, HEARTBEAT_TAG = "owner", "heartbeat"


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def owner_alive(run: Run, me: str, now: float | None = None) -> bool:
    """Whether another live process owns this RUNNING run."""
    owner = run.data.tags.get(OWNER_TAG)
    if run.info.status != "RUNNING" or not owner or owner == me:
        return False
    host, pid, _ = [*owner.split(":"), "", ""][:3]
    if host == socket.gethostname() and pid.isdigit() and not _process_alive(int(pid)):
        return False
    try:
        beat = float(run.data.tags.get(HEARTBEAT_TAG, "0"))
    except ValueError:
        return False
    return (time.time() if now is None else now) - beat < STALE_AFTER * HEARTBEAT_S


@contextlib.contextmanager
def claim_lock(uri: str) -> Iterator[None]:
    """Serialise claims on a local SQLite store (one file lock beside it); a server needs none here."""
    path = tracking.sqlite_file(uri)
    if path is None:
        yield
        return
    with file_lock(path.with_name(path.name + ".claim.lock")):
        yield


def claim(mlflow: tracking.Store, run_id: str, me: str) -> bool:
    """Write this process as the run's owner; False if another owner's claim landed last."""
    mlflow.set_tag(run_id, OWNER_TAG, me)
    mlflow.set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.0f}")
    return mlflow.get_run(run_id).data.tags.get(OWNER_TAG) == me


@contextlib.contextmanager
def heartbeat(mlflow: tracking.Store, run_id: str, interval: float = HEARTBEAT_S) -> Iterator[None]:
    """Refresh the run's heartbeat while the block runs (the job trains)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            with contextlib.suppress(Exception):  # a missed beat is retried at the next one
                mlflow.set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.0f}")

    thread = threading.Thread(target=beat, name="run-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
