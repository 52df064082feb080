"""Against the services a team runs: an MLflow tracking server on PostgreSQL (slow: a smoke study end to end)."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from services import free_port, serving

from analysis.report import run_description

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[1]


@pytest.fixture
def mlflow_server(postgres, tmp_path):
    """``mlflow server`` on the test database, artifacts proxied into a folder of its own, on loopback."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres, "--workers", "1"]
    command += ["--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port)]
    with serving(command, f"http://127.0.0.1:{port}/health", tmp_path / "server.log", ready=b"OK"):
        yield f"http://127.0.0.1:{port}"


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_study_logs_to_an_mlflow_server_and_the_report_rebuilds_its_table_from_the_server_alone(
    mlflow_server, tmp_path
):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "PYTHONPATH": str(ROOT)}
    env["SPARSE4D_LAB_CACHE"] = str(tmp_path / "cache")
    study = [sys.executable, "-m", "experiments.run", "+ab=loss_fix", "debug=smoke", "hydra.sweeper.params.seed=0"]
    study.append("figures=false")  # tables only: what the report rebuilds from the server
    done = subprocess.run(study, cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not list(work.glob("*.db")), "the study wrote a local store beside the server"

    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("sparse4d_lab").experiment_id
    [parent] = client.search_runs([exp], "tags.kind = 'study'")
    children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.info.run_name for r in children) == ["focal_filtered-seed0", "focal_onehot-seed0"]
    # The UI opens the experiment on its runs table, and the study's table is its parent run's description.
    assert client.get_experiment(exp).tags["mlflow.experimentKind"] == "custom_model_development"
    [own_md] = (work / "outputs" / "studies" / "loss_fix").glob("*/study_table.md")
    assert parent.data.tags["mlflow.note.content"] == run_description(own_md.read_text())
    assert parent.data.tags["mlflow.note.content"].startswith("# Study loss_fix")
    assert [r.info.status for r in children] == ["FINISHED", "FINISHED"]
    # The two jobs ran side by side: each began before the other ended.
    first, second = sorted(children, key=lambda r: r.info.start_time)
    assert second.info.start_time < first.info.end_time
    assert "checkpoints" in {a.path for a in client.list_artifacts(first.info.run_id)}  # through the proxy

    report = [sys.executable, "-m", "analysis.report", "--ab", "loss_fix", "--out", str(elsewhere / "report")]
    local = {k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"}
    for unset in (local, {**local, "MLFLOW_TRACKING_URI": ""}):  # no server named: no local store made up instead
        refused = subprocess.run(report, cwd=elsewhere, env=unset, capture_output=True, text=True)
        assert refused.returncode == 2 and "mlflow.db" in refused.stderr and not list(elsewhere.glob("*.db"))
    rebuilt = subprocess.run([*report, "--no-figures"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:] + rebuilt.stderr[-3000:]
    [own] = (work / "outputs" / "studies" / "loss_fix").glob("*/study_table.csv")
    assert read_csv(elsewhere / "report" / "study_table.csv") == read_csv(own)
    assert not list(elsewhere.glob("*.db"))
