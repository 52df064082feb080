"""Resuming a job: the checkpoint it resumes from, the random streams it carries, the history it keeps."""

import logging
import os
import random

import numpy as np
import torch
from omegaconf import OmegaConf

from experiments import tracking
from experiments.job import JobLogger
from experiments.resume import RandomStates, readable_checkpoint, record_resume


def draws() -> tuple[float, float, float]:
    return float(torch.rand(())), float(np.random.rand()), random.random()


def test_random_streams_survive_a_checkpoint(tmp_path):
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    np.random.standard_normal()  # numpy caches half a Gaussian pair: part of its state
    torch.save({"callbacks": {"RandomStates": RandomStates().state_dict()}}, tmp_path / "c.ckpt")
    expected = [draws() for _ in range(3)]
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    state = torch.load(tmp_path / "c.ckpt", weights_only=True)["callbacks"]["RandomStates"]  # no pickled code
    RandomStates().load_state_dict(state)
    assert [draws() for _ in range(3)] == expected


def test_a_corrupt_last_checkpoint_falls_back_to_the_newest_readable_one(tmp_path, caplog):
    older = tmp_path / "epoch=0-step=2.ckpt"
    torch.save({"global_step": 2, "state_dict": {"w": torch.ones(3)}}, older)
    last = tmp_path / "last.ckpt"
    torch.save({"global_step": 4, "state_dict": {"w": torch.ones(3)}}, last)
    assert readable_checkpoint(tmp_path) == (last, 4)
    last.write_bytes(last.read_bytes()[:100])  # killed while writing it
    with caplog.at_level(logging.WARNING):
        assert readable_checkpoint(tmp_path) == (older, 2)
    assert f"checkpoint {last} is unreadable" in caplog.text
    older.write_bytes(os.urandom(300))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert readable_checkpoint(tmp_path) is None
    assert "the job starts over" in caplog.text
    assert readable_checkpoint(tmp_path / "none") is None


def test_a_resumed_run_keeps_each_step_once_and_says_how_often_it_resumed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client(uri)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    first = JobLogger(experiment_name="e", tracking_uri=uri, run_id=run_id)
    for step in range(5):  # the killed process got to step 4; its checkpoint was at step 2
        first.log_metrics(
            {"train/loss": float(step), "val/mAP": 0.1} if step == 2 else {"train/loss": float(step)}, step
        )
    record_resume(client, run_id, 2)
    resumed = JobLogger(experiment_name="e", tracking_uri=uri, run_id=run_id, logged={"train/loss": 4, "val/mAP": 2})
    for step in range(3, 7):
        resumed.log_metrics({"train/loss": float(step)}, step)
    resumed.log_metrics({"val/mAP": 0.2}, 5)
    history = client.get_metric_history(run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(s, float(s)) for s in range(7)]
    assert [m.step for m in client.get_metric_history(run_id, "val/mAP")] == [2, 5]
    record_resume(client, run_id, 4)
    tags = client.get_run(run_id).data.tags
    assert tags["resumes"] == "2" and tags["resumed_from_steps"] == "2,4"


def test_a_run_whose_owner_lives_is_left_to_it_and_a_dead_owners_is_taken_over(tmp_path):
    import socket
    import subprocess
    import time

    from experiments.job_run import open_run
    from experiments.lease import HEARTBEAT_TAG, OWNER_TAG, owner_alive

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client(uri)
    exp = client.create_experiment("e")
    other = subprocess.Popen(["sleep", "60"])  # another process on this host, training the job
    host = socket.gethostname()
    run = client.create_run(exp, tags={"kind": "job", "config_hash": "h", OWNER_TAG: f"{host}:{other.pid}:t",
                                       HEARTBEAT_TAG: f"{time.time():.0f}"})  # fmt: skip
    cfg = OmegaConf.create({"study": None, "loss": {"arm": "a"}, "seed": 0})
    assert open_run(cfg, client, exp, {}, "h", owner=f"{host}:1:me") == (None, False)
    assert client.get_run(run.info.run_id).data.tags[OWNER_TAG] == f"{host}:{other.pid}:t"  # untouched
    other.kill()
    other.wait()
    assert open_run(cfg, client, exp, {}, "h", owner=f"{host}:1:me") == (run.info.run_id, True)
    assert client.get_run(run.info.run_id).data.tags[OWNER_TAG] == f"{host}:1:me"
    # On another host only the heartbeat tells: alive while fresh, dead after three missed beats.
    client.set_tag(run.info.run_id, OWNER_TAG, "elsewhere:123:t")
    fresh = client.get_run(run.info.run_id)
    beat = float(fresh.data.tags[HEARTBEAT_TAG])
    assert owner_alive(fresh, "me", now=beat + 60) and not owner_alive(fresh, "me", now=beat + 91)
