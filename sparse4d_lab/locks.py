"""Working beside other processes: an exclusive file lock, and retrying while a database reports itself locked."""

from __future__ import annotations

import contextlib
import fcntl
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
_jitter = random.Random()  # its own stream: a retry must not move the global one a job's results depend on


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block; others wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def retry_while_locked(fn: Callable[[], T], attempts: int = 8) -> T:
    """Call ``fn``, retrying with jittered back-off while the error says the database is locked (SQLite allows
    one writer at a time: concurrent studies on one file wait their turn instead of losing a write)."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as err:
            if "locked" not in str(err).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.2 * 2**attempt * (0.5 + _jitter.random()))
    raise AssertionError("unreachable")
