"""End to end: the user's command on smoke data, in a temporary folder (slow: CI runs each once)."""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[1]
ONE_SEED = ["debug=smoke", "hydra.sweeper.params.seed=0"]
NO_FIGURES = "figures=false"  # the smoke study draws them; the other studies' tests are about their jobs


def env_of(cwd: Path) -> dict[str, str]:
    env = {**os.environ, "SPARSE4D_LAB_CACHE": str(cwd.parent / "cache"), "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def start(cwd: Path, *overrides: str, module: str = "experiments.run") -> subprocess.Popen:
    """The user's command in the background (to run beside another, or to interrupt); output in ``../<n>.log``."""
    command = [sys.executable, "-m", module, *overrides]
    with open(cwd.parent / f"{len(list(cwd.parent.glob('*.log')))}.log", "w") as log:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env_of(cwd),
            stdout=log,
            stderr=subprocess.STDOUT,
            # A shell without job control starts background commands with SIGINT ignored; Ctrl-C must reach the job.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )


def run(cwd: Path, *overrides: str, check: bool = True, module: str = "experiments.run") -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", module, *overrides], cwd=cwd, env=env_of(cwd), capture_output=True, text=True
    )
    if check and result.returncode != 0:
        raise AssertionError(result.stdout[-3000:] + result.stderr[-5000:])
    return result


def store(cwd: Path) -> tuple[MlflowClient, str]:
    client = MlflowClient(tracking_uri=f"sqlite:///{cwd / 'mlflow.db'}")
    return client, client.get_experiment_by_name("sparse4d_lab").experiment_id


def jobs(client: MlflowClient, exp: str):
    return client.search_runs([exp], "tags.kind = 'job'")


@pytest.fixture
def workdir(tmp_path: Path, empty_store: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    shutil.copy(empty_store, path / "mlflow.db")
    return path


def test_smoke_study_end_to_end_then_skips_finished_jobs(workdir):
    (workdir / "mlflow.db").unlink()  # the user's first study: both studies below find no store and one makes it
    # A second study writes to the same SQLite file at the same time: neither may lose a write.
    other = start(workdir, "+ab=loss_zoo", *ONE_SEED, "hydra.sweeper.params.loss=detr_ce", NO_FIGURES)
    out = run(workdir, "+ab=loss_fix", *ONE_SEED)
    assert other.wait() == 0, (workdir.parent / "0.log").read_text()[-3000:]
    client, exp = store(workdir)
    [zoo] = client.search_runs([exp], "tags.kind = 'study' and tags.ab = 'loss_zoo'")
    [detr] = client.search_runs([exp], f"tags.{MLFLOW_PARENT_RUN_ID} = '{zoo.info.run_id}'")
    assert zoo.info.status == detr.info.status == "FINISHED"
    assert len(client.get_metric_history(detr.info.run_id, "val/mAP")) == 2  # one per epoch of debug=smoke
    [parent] = client.search_runs([exp], "tags.kind = 'study' and tags.ab = 'loss_fix'")
    assert parent.info.status == "FINISHED" and parent.data.tags["ab"] == "loss_fix"
    assert parent.data.tags["primary"] == "test/mAP,test/hc_fp_cls_per_frame,test/IDF1"  # from ab/loss_fix.yaml
    assert parent.data.tags["command"] == "python -m experiments.run +ab=loss_fix debug=smoke"  # hydra.*: not a job's
    children = client.search_runs([exp], f"tags.{MLFLOW_PARENT_RUN_ID} = '{parent.info.run_id}'")
    assert sorted(r.data.tags["arm"] for r in children) == ["focal_filtered", "focal_onehot"]
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["seed"] == "0"
        assert child.data.tags["threads"] == str(max(1, len(os.sched_getaffinity(0)) // 2))  # 2 jobs side by side
        assert {"git_sha", "git_dirty", "config_hash"} <= set(child.data.tags)
        assert {"test/mAP", "test/hc_fp_per_frame", "test/gini", "val/mAP", "train_time_s"} <= set(child.data.metrics)
        assert child.data.params["loss.scheme"] == child.data.tags["arm"]
        # One test scene in debug=smoke: its own metrics are the split's, each one of them.
        scene = {k: v for k, v in child.data.metrics.items() if k.startswith("test_scene/")}
        assert {k.split("/")[1] for k in scene} == {"test_0000"}
        whole = {k: v for k, v in child.data.metrics.items() if k.startswith("test/")}
        assert {k.replace("test_scene/test_0000/", "test/"): v for k, v in scene.items()} == pytest.approx(
            whole, nan_ok=True
        )
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {
            "config.yaml",
            "evaluation.json",
            "query_scores.png",
            "bev_val_frame.png",
            "bev_test_frame.png",
            "checkpoints",
        } <= artifacts
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "study_table.md",
        "study_table.csv",
        "study_report.html",
        "figures",
    }
    assert "figures/pr_curves.png" in {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    [table] = (workdir / "outputs" / "studies" / "loss_fix").glob("*/study_table.md")
    rows = [line for line in table.read_text().splitlines() if line.startswith("| focal")]
    assert [r.split("|")[1].strip() for r in rows] == ["focal_filtered", "focal_onehot"]  # baseline first
    assert "focal_filtered" in out.stdout
    printed = out.stdout + out.stderr
    assert "study loss_fix: 2/2 jobs finished, 0 running, 0 failed; elapsed" in printed  # the study's last line
    assert re.search(r"study loss_fix: [01]/2 jobs finished, [12] running", printed)  # a line while jobs ran
    for noise in ("GPU available", "TPU available", "litlogger", "LeafSpec", "noload"):
        assert noise not in printed

    steps = {c.info.run_id: len(client.get_metric_history(c.info.run_id, "train/loss")) for c in children}
    run(workdir, "+ab=loss_fix", *ONE_SEED, NO_FIGURES)  # the same command again: every job already finished
    assert len(jobs(client, exp)) == 3  # no new run, and no step trained again into the old ones
    assert {i: len(client.get_metric_history(i, "train/loss")) for i in steps} == steps
    assert len(client.search_runs([exp], "tags.kind = 'study'")) == 2


def test_a_failing_job_is_recorded_and_the_study_goes_on_then_exits_non_zero(workdir):
    overrides = ["hydra.sweeper.params.loss=focal_onehot", "train.max_loss=1e-6,1e4", "trainer.max_epochs=1"]
    overrides.append(NO_FIGURES)
    alone_dir = workdir.parent / "alone"  # a job run alone, beside the study (its own store)
    alone_dir.mkdir()
    alone = start(alone_dir, "debug=smoke", "train.max_loss=1e-6", "trainer.max_epochs=1")
    out = run(workdir, "+ab=loss_fix", *ONE_SEED, *overrides, check=False)
    client, exp = store(workdir)
    runs = {r.data.params["train.max_loss"]: r for r in jobs(client, exp)}
    failed, finished = runs["1e-06"], runs["10000.0"]
    assert failed.info.status == "FAILED" and "DivergedError" in failed.data.tags["error"]
    assert finished.info.status == "FINISHED"
    [parent] = client.search_runs([exp], "tags.kind = 'study'")
    assert parent.data.tags["missing_runs"] == "0"  # both (arm, seed) cells are covered by the finished run
    # The table is written, and then the study says it is not whole: FAILED, naming the job, exit status 1.
    assert "focal_onehot" in out.stdout and list((workdir / "outputs" / "studies").glob("loss_fix/*/study_table.md"))
    assert out.returncode == 1 and "1 job(s) FAILED: focal_onehot seed 0" in out.stderr
    assert parent.info.status == "FAILED" and failed.info.run_id in parent.data.tags["failed_jobs"]
    # A job run alone exits non-zero too.
    assert alone.wait() == 1 and "JobFailed" in (workdir.parent / "0.log").read_text()


def test_killed_job_resumes_into_the_same_run_bit_identical_to_the_same_job_never_interrupted(workdir, empty_store):
    overrides = ["debug=smoke", "trainer.max_epochs=4", "trainer.limit_train_batches=2", "threads=1"]
    # The same job never interrupted, beside it (a core each), into a store and checkpoints of its own.
    elsewhere = [f"logger.tracking_uri=sqlite:///{workdir / 'b.db'}", f"paths.checkpoints={workdir / 'b'}"]
    shutil.copy(empty_store, workdir / "b.db")
    reference = start(workdir, *overrides, *elsewhere)
    proc = start(workdir, *overrides)
    deadline = time.time() + 300
    while not list(workdir.glob("checkpoints/*/last.ckpt")) and time.time() < deadline:
        time.sleep(0.05)  # kill soon after the first checkpoint: an epoch validated after it would be replayed
    assert proc.poll() is None, "the job ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    client, exp = store(workdir)
    [killed] = jobs(client, exp)
    assert killed.info.status == "RUNNING"
    client.set_tag(killed.info.run_id, "error", "OSError: an earlier attempt's")
    out = run(workdir, *overrides)
    [resumed] = jobs(client, exp)
    assert "error" not in resumed.data.tags  # the attempt that succeeded clears it
    assert resumed.info.run_id == killed.info.run_id and resumed.info.status == "FINISHED"
    assert "Restoring states from the checkpoint" in out.stdout + out.stderr
    assert resumed.data.tags["resumes"] == "1" and int(resumed.data.tags["resumed_from_steps"]) in (2, 4, 6)
    # Bit-identical to the same job never interrupted (weights, optimiser, schedule and random streams resumed),
    # and each metric's history holds every step once, though the killed process logged steps past its checkpoint.
    # So the same config and seed give the same metrics too, a NaN (a metric undefined on smoke data) in both.
    assert reference.wait() == 0, (workdir.parent / "0.log").read_text()[-3000:]
    other = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'b.db'}")
    [whole] = jobs(other, other.get_experiment_by_name("sparse4d_lab").experiment_id)
    keys = sorted(k for k in whole.data.metrics if k not in ("train_time_s", "epoch"))  # epoch: Lightning's count
    assert keys == sorted(k for k in resumed.data.metrics if k not in ("train_time_s", "epoch"))
    assert any(k.startswith("test/") for k in keys)
    assert len(client.get_metric_history(resumed.info.run_id, "val/mAP")) == 4
    for key in keys:
        a, b = ([(m.step, m.value) for m in c.get_metric_history(r.info.run_id, key)]
                for c, r in ((client, resumed), (other, whole)))  # fmt: skip
        assert len({step for step, _ in a}) == len(a), key
        np.testing.assert_array_equal(np.asarray(sorted(a)), np.asarray(sorted(b)), err_msg=key)


def test_a_study_through_submitit_requeues_a_preempted_job_and_it_resumes_into_its_run(workdir):
    # The cluster path up to the scheduler: the slurm launcher's plugin and job code, with submitit's local executor.
    overrides = ["trainer.max_epochs=4", "trainer.limit_train_batches=2", "hydra/launcher=submitit_local", NO_FIGURES]
    proc = start(workdir, "+ab=loss_fix", *ONE_SEED, *overrides)
    deadline = time.time() + 300
    while not list(workdir.glob("checkpoints/*/last.ckpt")) and time.time() < deadline:
        time.sleep(0.05)
    [first] = [p.parent.name for p in workdir.glob("checkpoints/*/last.ckpt")][:1]
    client, exp = store(workdir)
    [preempted] = [r for r in jobs(client, exp) if r.data.tags["config_hash"] == first]
    pid = int(preempted.data.tags["owner"].split(":")[1])  # host:pid:token of the job's process
    os.kill(pid, signal.SIGUSR2)  # what SLURM sends before pre-empting or at the time limit
    assert proc.wait(timeout=600) == 0, (workdir.parent / "0.log").read_text()[-3000:]
    runs = jobs(client, exp)
    assert sorted(r.data.tags["arm"] for r in runs) == ["focal_filtered", "focal_onehot"]
    assert all(r.info.status == "FINISHED" for r in runs)
    [resumed] = [r for r in runs if r.info.run_id == preempted.info.run_id]
    assert resumed.data.tags["resumes"] == "1" and "error" not in resumed.data.tags
    [log] = [p for p in workdir.glob("outputs/studies/loss_fix/*/.submitit/*/*_log.out") if "Requeued" in p.read_text()]
    assert "this job is preempted" in log.read_text()


def kill_after_first_checkpoint(proc: subprocess.Popen, workdir: Path) -> None:
    deadline = time.time() + 300
    while not list(workdir.glob("checkpoints/*/last.ckpt")) and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the command ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_killed_pretrain_resumes_into_its_run_and_writes_its_base(workdir, empty_store):
    overrides = ["debug=smoke", "trainer.max_epochs=3", "trainer.limit_train_batches=2", "logger.log_checkpoint=false",
                 "threads=1", "train.ema_decay=0.999"]  # fmt: skip
    # The same pretraining never interrupted, beside it, into a store, checkpoints and base of its own.
    shutil.copy(empty_store, workdir / "b.db")
    elsewhere = [f"logger.tracking_uri=sqlite:///{workdir / 'b.db'}", f"paths.checkpoints={workdir / 'b'}",
                 f"pretrain.out={workdir / 'b' / 'base'}"]  # fmt: skip
    reference = start(workdir, *overrides, *elsewhere, module="experiments.pretrain")
    kill_after_first_checkpoint(start(workdir, *overrides, module="experiments.pretrain"), workdir)
    client, exp = store(workdir)
    [killed] = client.search_runs([exp], "tags.kind = 'pretrain'")
    assert killed.info.status == "RUNNING" and not (workdir / "bases" / "tiny.pt").exists()
    out = run(workdir, *overrides, module="experiments.pretrain")
    [done] = client.search_runs([exp], "tags.kind = 'pretrain'")
    assert done.info.run_id == killed.info.run_id and done.info.status == "FINISHED"
    assert "Restoring states from the checkpoint" in out.stdout + out.stderr
    weights = workdir / "bases" / "tiny.pt"
    record = json.loads(weights.with_suffix(".json").read_text())
    assert record["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert record["mlflow_run_id"] == done.info.run_id and record["steps"] == 6 and record["epochs"] == 3
    history = client.get_metric_history(done.info.run_id, "val/mAP")
    assert sorted({m.step for m in history}) == [s for s, _ in record["curves"]["val/mAP"]][-3:]
    assert record["command"] == "python -m experiments.pretrain " + " ".join(overrides)
    # The base is the EMA of the weights (train.ema_decay), resumed with them: the base never interrupted holds
    # the same tensors, and they are not the last step's weights.
    assert reference.wait() == 0, (workdir.parent / "0.log").read_text()[-3000:]
    base, whole = (torch.load(path, weights_only=True) for path in (weights, workdir / "b" / "base.pt"))
    assert base.keys() == whole.keys() and all(torch.equal(v, whole[k]) for k, v in base.items())
    [last] = workdir.glob("checkpoints/*/last.ckpt")
    current = torch.load(last, weights_only=True)["current_model_state"]
    assert base.keys() == {k.removeprefix("model.") for k in current if k.startswith("model.")}
    assert not all(torch.equal(v, current[f"model.{k}"]) for k, v in base.items())
    # The base is the run's last weights; a study's job fine-tunes from it.
    run(workdir, "debug=smoke", "trainer.max_epochs=1", f"init.path={weights}")
    [job] = jobs(client, exp)
    assert job.data.tags["init"] == "pretrained" and job.data.tags["init_sha256"] == record["sha256"]


def test_ddp_jobs_of_a_study_run_on_two_cpu_processes(workdir):
    # Lightning re-executes the command for rank 1: inside a study that must become this job, not the sweep,
    # and the second job must start its own process group rather than reuse the first one's.
    run(workdir, "+ab=loss_fix", *ONE_SEED, "trainer=ddp", "trainer.max_epochs=1", "hydra/launcher=basic", NO_FIGURES)
    client, exp = store(workdir)
    runs = jobs(client, exp)
    assert sorted(r.data.tags["arm"] for r in runs) == ["focal_filtered", "focal_onehot"]
    for job in runs:
        assert job.info.status == "FINISHED" and job.data.params["trainer.strategy"] == "ddp"
        assert job.data.params["trainer.devices"] == "2" and "test/mAP" in job.data.metrics
    assert len(client.search_runs([exp], "tags.kind = 'study'")) == 1  # rank 1 did not start a second study


def test_ctrl_c_marks_the_job_and_the_study_killed(workdir):
    proc = start(workdir, "+ab=loss_fix", *ONE_SEED, "trainer.max_epochs=50")
    deadline = time.time() + 300
    while not list(workdir.glob("checkpoints/*/last.ckpt")) and time.time() < deadline:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the study and its job processes
    assert proc.wait(timeout=120) != 0
    client, exp = store(workdir)
    runs = client.search_runs([exp])
    assert {r.data.tags["kind"] for r in runs} == {"study", "job"}
    assert {r.info.status for r in runs} == {"KILLED"}


def test_sigterm_to_the_study_alone_ends_every_process_and_the_next_run_resumes(workdir):
    """``kill PID`` (what systemd and schedulers send first): the study, not its process group, gets SIGTERM."""
    overrides = ["+ab=loss_fix", *ONE_SEED, "trainer.max_epochs=4", NO_FIGURES]
    proc = start(workdir, *overrides)
    deadline = time.time() + 300
    while not list(workdir.glob("checkpoints/*/last.ckpt")) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stopped = time.time()
    assert proc.wait(timeout=60) != 0
    while time.time() - stopped < 30:  # every worker of the study ends too: none is left training
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("processes of the study were still alive 30 s after SIGTERM")
    client, exp = store(workdir)
    assert {r.info.status for r in client.search_runs([exp])} == {"KILLED"}
    run(workdir, *overrides)
    assert {r.info.status for r in client.search_runs([exp])} == {"FINISHED"}
    assert any(r.data.tags.get("resumes") == "1" for r in jobs(client, exp))
