"""Shared fixtures: a fresh database on the test PostgreSQL server and a Chromium (both provided by .ci/run), and
an empty MLflow store to copy."""

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import sqlalchemy
from mlflow import MlflowClient

SERVER = os.environ.get("SPARSE4D_LAB_TEST_POSTGRES")  # postgresql+psycopg2://user@host:port, no database
IN_CI = os.environ.get("SPARSE4D_LAB_CI") == "1"


def missing(service: str, why: str) -> None:
    """Skip a test whose service is absent; in CI fail it, so tests that need a service cannot silently not run."""
    if IN_CI:
        pytest.fail(f"CI must run the {service} tests; {why}")
    pytest.skip(why)


@pytest.fixture
def postgres(request) -> str:
    """A SQLAlchemy URL of an empty database of its own."""
    if not SERVER:
        missing("PostgreSQL", "no server: set SPARSE4D_LAB_TEST_POSTGRES=postgresql+psycopg2://user@host:port")
    name = "test_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
    admin = sqlalchemy.create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{SERVER}/{name}"


@pytest.fixture
def chromium() -> str:
    """The path of a Chromium for headless page checks (Debian's package, which .ci/run installs)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        missing("browser", "no Chromium: apt-get install chromium (.ci/run does)")
    return path


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow SQLite file with its schema made once: copied where a test's first process would otherwise spend
    seconds on the schema migration (the tests of a store made from nothing do not use it)."""
    path = tmp_path_factory.mktemp("empty_store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments(max_results=1)
    return path
