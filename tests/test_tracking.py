"""The MLflow store as the commands use it: calls that wait out another writer, and a run's life-cycle."""

import pytest

from experiments import tracking


class Flaky:
    """An MlflowClient stand-in whose ``set_tag`` meets a locked database ``locked`` times before it succeeds."""

    def __init__(self, locked: int, error: str = "(sqlite3.OperationalError) database is locked"):
        self.locked, self.error, self.calls = locked, error, []

    def set_tag(self, run_id: str, key: str, value: str) -> str:
        self.calls.append((run_id, key, value))
        if len(self.calls) <= self.locked:
            raise RuntimeError(self.error)
        return "done"


def test_a_call_on_a_locked_store_is_retried_and_any_other_error_is_not(monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    flaky = Flaky(locked=3)
    assert tracking.Store(flaky).set_tag("r", "k", "v") == "done"
    assert flaky.calls == [("r", "k", "v")] * 4
    other = Flaky(locked=1, error="no such run")
    with pytest.raises(RuntimeError, match="no such run"):
        tracking.Store(other).set_tag("r", "k", "v")
    assert len(other.calls) == 1
    with pytest.raises(AttributeError):
        tracking.Store(flaky).no_such_method  # noqa: B018


def test_a_failed_attempt_then_a_finished_one(tmp_path):
    store = tracking.client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = store.create_run(tracking.experiment_id(store, "e")).info.run_id
    store.fail(run_id, "OSError: " + "x" * 6000)
    run = store.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["error"] == ("OSError: " + "x" * 6000)[:5000]
    store.set_tags(run_id, {"a": "1", "b": "2"})
    store.finish(run_id)  # a resumed attempt that got through: the earlier error is not this run's
    run = store.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["complete"] == "1" and "error" not in run.data.tags
    assert run.data.tags["a"] == "1" and run.data.tags["b"] == "2"
