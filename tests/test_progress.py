"""The study's progress line and the trimmed job output."""

import io
import logging
import os
import re
import shutil
import warnings

import pytest
from mlflow.entities import Metric
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from rich.console import Console

from experiments import tracking
from experiments.progress import LIVE_ENV, STEP_METRIC, STEPS_TAG, StudyProgress, clock, counts, line
from experiments.quiet import JobProgressBar, off_the_console, quiet_third_parties


def test_counts_and_the_estimate_from_measured_job_times():
    runs = [
        ("FINISHED", 0.0, 100.0),  # 100 s
        ("FINISHED", 10.0, 310.0),  # 300 s: mean 200 s
        ("FAILED", 20.0, 30.0),  # failed jobs are neither finished nor measured
        ("RUNNING", 250.0, None),  # 150 s in at now = 400: 50 s left of the mean
    ]
    c = counts(runs, total=7, slots=2, now=400.0)
    assert (c.total, c.finished, c.running, c.failed) == (7, 2, 1, 1)
    assert c.eta_s == pytest.approx((3 * 200 + 50) / 2)  # 3 not started
    assert counts([("RUNNING", 0.0, None)], total=2, slots=2, now=5.0).eta_s is None  # nothing measured yet
    assert counts([("RUNNING", 0.0, None)] * 2, 2, 2, 500.0).running == 2
    late = counts([("FINISHED", 0.0, 10.0), ("RUNNING", 0.0, None)], total=2, slots=1, now=100.0)
    assert late.eta_s == 0.0  # a job running past the mean adds nothing, not a negative time


def test_the_line_says_jobs_of_total_elapsed_and_eta():
    c = counts([("FINISHED", 0.0, 90.0), ("RUNNING", 60.0, None)], total=4, slots=2, now=120.0)
    assert line("loss_fix", c, 125.0) == (
        "study loss_fix: 1/4 jobs finished, 1 running, 0 failed; elapsed 2:05, ETA 1:45"  # (2 x 90 + 30) / 2 = 105 s
    )
    assert clock(3725.4) == "1:02:05" and clock(59.6) == "1:00"


def test_job_bars_carry_arm_and_seed():
    bar = JobProgressBar("focal_onehot seed 3")
    assert bar.validation_description == "focal_onehot seed 3 Validation"
    assert bar.test_description == "focal_onehot seed 3 Test"


def test_banners_and_known_library_warnings_are_dropped_at_their_source_and_ours_stay(caplog):
    quiet_third_parties()
    quiet_third_parties()  # idempotent: one filter, not two
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    assert len(rank_zero.filters) == 1
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.utilities.rank_zero"):
        rank_zero.info("GPU available: False, used: False")
        rank_zero.info("💡 Tip: For seamless cloud logging ...")
        rank_zero.info("Restoring states from the checkpoint path at x.ckpt")
    assert [r.getMessage() for r in caplog.records] == ["Restoring states from the checkpoint path at x.ckpt"]
    with warnings.catch_warnings(record=True) as caught:
        quiet_third_parties()  # catch_warnings restores the filters on exit, so set them inside
        warnings.simplefilter("always")
        quiet_third_parties()
        message = "`isinstance(treespec, LeafSpec)` is deprecated, use ..."
        warnings.warn_explicit(message, FutureWarning, "_pytree.py", 21, module="lightning.pytorch.utilities._pytree")
        warnings.warn_explicit(message, FutureWarning, "job.py", 1, module="experiments.job")  # not a library's
    assert [w.filename for w in caught] == ["job.py"]


def test_inside_a_job_lightnings_lines_print_once_through_the_jobs_own_handlers():
    stream = io.StringIO()
    job_handler = logging.StreamHandler(stream)  # what Hydra installs: the job's console and its run.log
    root = logging.getLogger()
    names = ("lightning", "lightning.pytorch", "lightning.fabric")
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate) for name in names}
    root.addHandler(job_handler)
    try:
        quiet_third_parties()
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("Restoring states from the checkpoint")
        assert stream.getvalue() == "Restoring states from the checkpoint\n"
        assert not [h for name in names for h in logging.getLogger(name).handlers if type(h) is logging.StreamHandler]
    finally:
        root.removeHandler(job_handler)
        for name, (handlers, propagate) in saved.items():
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).propagate = propagate


def test_in_a_terminal_the_study_line_is_live_with_a_bar_per_running_job(tmp_path, empty_store):
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    store = tracking.client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = tracking.experiment_id(store, "progress")
    parent = store.create_run(exp, tags={"kind": "study"}).info.run_id
    child = {MLFLOW_PARENT_RUN_ID: parent, "kind": "job", "seed": "0"}
    done = store.create_run(exp, tags={**child, "arm": "focal_filtered"}).info.run_id
    store.set_terminated(done, "FINISHED")
    running = store.create_run(exp, tags={**child, "arm": "focal_onehot", STEPS_TAG: "100"}).info.run_id
    store.log_batch(running, metrics=[Metric(STEP_METRIC, 1.0, 0, step) for step in (10, 20, 30, 40)])
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, color_system=None, width=120)
    progress = StudyProgress(store, parent, "loss_fix", total=3, slots=2, interval_s=3600, console=console).start()
    assert os.environ[LIVE_ENV] == "1"  # the job processes started now keep off the console
    progress.stop()
    assert LIVE_ENV not in os.environ
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "study loss_fix: 1/3 jobs finished, 1 running, 0 failed" in drawn  # the line above the display
    assert re.search(r"study loss_fix .* 1/3 jobs finished, 1 running", drawn)  # the live study bar
    assert re.search(r"focal_onehot seed 0 .* 40/100 steps", drawn)  # the running job's bar: last step of total
    assert "focal_filtered seed 0 " not in drawn  # a finished job has no bar


def test_a_job_under_the_live_display_logs_to_its_file_only(tmp_path):
    root = logging.getLogger()
    console, file = logging.StreamHandler(io.StringIO()), logging.FileHandler(tmp_path / "run.log")
    library = logging.getLogger("a_library")  # a library that prints through a handler of its own
    library.addHandler(logging.StreamHandler(io.StringIO()))
    library.propagate = False
    saved = root.handlers[:]
    root.handlers[:] = [console, file]
    root.setLevel(logging.INFO)
    try:
        off_the_console()
        library.info("a library line")
        warnings.warn("a warning", UserWarning, stacklevel=1)
        assert root.handlers == [file] and library.handlers == [] and library.propagate
        file.flush()
        written = (tmp_path / "run.log").read_text()
        assert "a library line" in written and "a warning" in written
        assert console.stream.getvalue() == ""
    finally:
        logging.captureWarnings(False)
        root.handlers[:] = saved
        file.close()
