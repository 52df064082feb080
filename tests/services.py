"""Helpers for tests against real servers started on loopback."""

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(
    command: list[str], url: str, log: Path, ready: bytes | None = None, timeout_s: float = 120
) -> Iterator[str]:
    """Run a server until the block ends; yields ``url`` once it answers (with ``ready`` as its body, if given).
    A server that exits or does not answer in time fails with the end of its log."""
    with open(log, "w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if ready is None or answer.read() == ready:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{command[:4]} did not answer at {url}:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
