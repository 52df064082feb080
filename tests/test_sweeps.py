"""Optuna sweeps: declarations checked before any work, the sampler, workers sharing a study, the report, and (slow)
the user's command end to end on smoke data."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_module
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from omegaconf import OmegaConf
from optuna.trial import TrialState, create_trial
from services import free_port, serving

import sweeps.trial
from experiments import tracking
from sparse4d_lab.errors import ConfigError
from sparse4d_lab.eval.keys import metric_names
from sweeps.run import compose_experiment, experiment_configs, experiment_groups, report, run_sweep
from sweeps.space import SweepSpec
from sweeps.storage import StudyLock, TrialSeededSampler, storage, work
from sweeps.trial import close_dead_worker_runs

ROOT = Path(__file__).parents[1]
SWEEPS = sorted(p.stem for p in (ROOT / "sweeps" / "conf" / "sweep").glob("*.yaml"))
SINGLE = ["sweep.objectives=[{metric: mAP, direction: maximize}]"]


def app_cfg(tmp_path: Path, *overrides: str):
    """This app's config as ``python -m sweeps.run`` composes it, with its runtime paths set."""
    with initialize_config_module("sweeps.conf", version_base="1.3"):
        return compose("sweeps", [*overrides, f"root='{tmp_path}'", f"output_dir='{tmp_path / 'out'}'"])


def spec_of(name: str = "smoke", **changes) -> SweepSpec:
    node = OmegaConf.load(ROOT / "sweeps" / "conf" / "sweep" / f"{name}.yaml")
    for key, value in changes.items():
        node[key] = value
    return SweepSpec.parse(node)


def check(spec: SweepSpec, tmp_path: Path, extra: tuple[str, ...] = ()):
    with experiment_configs():
        return spec.check(lambda o: compose_experiment(o, str(tmp_path), tmp_path), experiment_groups, list(extra))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One smoke data cache for the module's trials."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def in_tmp(tmp_path, monkeypatch, cache, empty_store) -> Path:
    """Storage and MLflow store in a temporary working folder. The store's URI is absolute: MLflow caches a store
    per URI in the process, so a relative one would keep pointing at an earlier test's folder."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("SPARSE4D_LAB_CACHE", str(cache))
    return tmp_path


def trial_runs(client: MlflowClient, parent: str):
    exp = client.get_experiment_by_name("sparse4d_lab").experiment_id
    runs = client.search_runs([exp], f"tags.{MLFLOW_PARENT_RUN_ID} = '{parent}'")
    return sorted(runs, key=lambda r: int(r.data.tags["trial_number"]))


def sweep_runs(client: MlflowClient):
    return client.search_runs([client.get_experiment_by_name("sparse4d_lab").experiment_id], "tags.kind = 'sweep'")


@pytest.mark.parametrize("name", SWEEPS)
def test_every_provided_sweep_checks_against_the_experiment_config(name, tmp_path):
    cfg = app_cfg(tmp_path, f"+sweep={name}")
    spec = SweepSpec.parse(cfg.sweep)
    base = check(spec, tmp_path, tuple(cfg.overrides))
    assert cfg.study_name == spec.name == name
    assert {o.metric for o in spec.objectives} <= set(metric_names(base.eval.fp_thresholds))
    assert (spec.pruner is None) or len(spec.objectives) == 1
    assert {p.name for p in spec.params} >= ({"optim.lr"} if name != "smoke" else {"loss", "optim.lr"})


def test_arm_sweeps_tune_the_knobs_of_their_arm():
    knobs = {name: {p.name for p in spec_of(name).params} for name in ("focal_onehot", "detr_ce", "paq")}
    assert knobs["focal_onehot"] == {"loss.options.alpha", "loss.options.gamma", "optim.lr"}
    assert knobs["detr_ce"] == {"loss.options.eos_coef", "optim.lr"}
    assert knobs["paq"] == {"loss.paq.lambda", "loss.paq.topk", "loss.paq.num_patterns", "optim.lr"}
    assert [o.metric for o in spec_of("focal_onehot").objectives] == ["mAP", "hc_fp_cls_per_frame"]


LR = {"type": "float", "low": 1.0e-4, "high": 1.0e-3, "log": True}
BAD_PARAMS = [
    ({"optim.lr": {"type": "flaot", "low": 0.1, "high": 1}}, r"sweep\.params\.optim\.lr\.type: 'flaot' .* float, int"),
    ({"optim.lr": {"type": "float", "low": 0.5, "high": 0.1}}, r"optim\.lr: low \(0\.5\) must not exceed high"),
    ({"optim.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}, r"optim\.lr: log scale needs low > 0"),
    ({"optim.lr": {"type": "float", "lo": 0.1, "high": 1}}, r"optim\.lr: \['lo'\] not valid for type float"),
    ({"optim.warmup_steps": {"type": "int", "low": 1.5, "high": 3}}, r"warmup_steps\.low: expected an integer"),
    ({"loss": {"type": "categorical", "choices": []}}, r"sweep\.params\.loss\.choices: expected a non-empty list"),
    ({"optim.lr": {**LR, "when": {"loss": "detr_ce"}}}, r"optim\.lr\.when\.loss: .* declared above .* none"),
    (
        {"loss": {"type": "categorical", "choices": ["detr_ce"]}, "optim.lr": {**LR, "when": {"loss": "vfl"}}},
        r"optim\.lr\.when\.loss: \['vfl'\] not among its choices \['detr_ce'\]",
    ),
]


@pytest.mark.parametrize(("params", "message"), BAD_PARAMS)
def test_bad_search_spaces_fail_naming_the_key(params, message):
    with pytest.raises(ConfigError, match=message):
        spec_of(params=params)


BAD_AGAINST_CONFIG = [
    ({"params": {"optim.lrr": LR}}, r"sweep\.params\.optim\.lrr: no such key in the experiment config"),
    ({"params": {"optim": LR}}, r"sweep\.params\.optim: a config node, not a value"),
    ({"params": {"loss": LR}}, r"sweep\.params\.loss: a config group: use type categorical with choices among"),
    (
        {"params": {"loss": {"type": "categorical", "choices": ["focal_onehot", "focal"]}}},
        r"sweep\.params\.loss: a config group: .*'detr_ce'",
    ),
    # eos_coef exists only in detr_ce's loss config: a knob for it must be conditional on that arm
    ({"params": {"loss.options.eos_coef": LR}}, r"sweep\.params\.loss\.options\.eos_coef: no such key"),
    ({"fixed": ["optim.lr=0.001"], "params": {"optim.lr": LR}}, r"sweep\.params\.optim\.lr: also fixed by an override"),
    ({"fixed": ["optim.lrr=1"]}, r"sweep\.fixed / overrides: \['optim\.lrr=1'.* do not compose"),
    ({"objectives": [{"metric": "mAp", "direction": "maximize"}]}, r"objectives\[0\]\.metric: unknown metric 'mAp'"),
    ({"pruner": {"_target_": "optuna.pruners.MedianPruner"}}, r"sweep\.pruner: Optuna prunes single-objective"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_AGAINST_CONFIG)
def test_knobs_and_objectives_are_checked_against_the_experiment_config(changes, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        check(spec_of(**changes), tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], r"sweep: none chosen; add \+sweep=NAME, NAME one of: detr_ce, focal_onehot, paq, smoke"),
        (["+sweep=smoke", "n_trials=0"], r"n_trials: .* must be >= 1"),
        (["+sweep=smoke", "~sweep.name"], r"sweep\.name: expected the sweep's name"),
        (["+sweep=smoke", "max_failure_rate=2"], r"max_failure_rate: a fraction"),
        (["+sweep=smoke", "+sweep.prams={}"], r"sweep: \['prams'\] are not sweep keys"),
        (["+sweep=smoke", "sweep.objectives=[{metric: mAP, direction: max}]"], r"objectives\[0\]\.direction: 'max'"),
        (["+sweep=smoke", "sampler._target_=optuna.samplers.NoSampler"], r"sampler: cannot build"),
        (["+sweep=smoke", "overrides=['trainer=ddp']"], r"trainer: a trial trains in one process, got devices=2"),
    ],
)
def test_bad_commands_fail_before_any_trial(overrides, message, in_tmp):
    (in_tmp / "mlflow.db").unlink()  # no store yet: a bad command must not make one
    with pytest.raises(ConfigError, match=message):
        run_sweep(app_cfg(in_tmp, *overrides))
    assert not (in_tmp / "mlflow.db").exists()


def test_a_study_resumed_with_other_knobs_is_refused(in_tmp):
    optuna.create_study(study_name="smoke", storage="sqlite:///sweeps.db").set_user_attr("sweep", "{}")
    with pytest.raises(ConfigError, match=r"study_name: study 'smoke' in sqlite:///.*sweeps\.db was run with other"):
        run_sweep(app_cfg(in_tmp, "+sweep=smoke"))
    assert len(optuna.load_study(study_name="smoke", storage="sqlite:///sweeps.db").trials) == 0


def test_draws_follow_conditions_and_compose(tmp_path):
    spec = spec_of()
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=TrialSeededSampler(lambda s: optuna.samplers.TPESampler(seed=s), 0)
    )
    draws = []
    for _ in range(12):
        trial = study.ask()
        overrides = spec.draw(trial)
        draws.append((trial.params, overrides))
        study.tell(trial, [0.0, 0.0])
    arms = {params["loss"] for params, _ in draws}
    assert arms == {"focal_onehot", "detr_ce"}
    for params, _ in draws:
        expected = {"loss", "optim.lr", "optim.warmup_steps"}
        expected |= {"loss.options.alpha"} if params["loss"] == "focal_onehot" else {"loss.options.eos_coef"}
        assert set(params) == expected
        assert 3e-4 <= params["optim.lr"] <= 3e-3 and params["optim.warmup_steps"] in (1, 2, 3)
    with experiment_configs():
        for params, overrides in draws[:4]:
            cfg = compose_experiment([*spec.fixed, *overrides], str(tmp_path), tmp_path)
            assert cfg.loss.arm == params["loss"] and cfg.optim.lr == params["optim.lr"]
            key = "alpha" if params["loss"] == "focal_onehot" else "eos_coef"
            assert cfg.loss.options[key] == params[f"loss.options.{key}"]


def draws_of(samplers: list, trials: int = 6) -> list[dict]:
    """Trials of one study asked in turn by each of ``samplers`` (one per worker), told a fixed value."""
    study = optuna.create_study()
    for i in range(trials):
        study.sampler = samplers[i % len(samplers)]
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, 1.0)
    return [t.params for t in study.trials]


def test_seeded_sampler_replays_a_sweep_and_workers_do_not_draw_the_same_points():
    def seeded():
        return TrialSeededSampler(lambda s: optuna.samplers.TPESampler(seed=s), 0)

    assert draws_of([seeded()]) == draws_of([seeded()])  # the same seed replays the sweep
    two_workers = draws_of([seeded(), seeded()])
    assert len({p["x"] for p in two_workers}) == 6
    # What the per-trial seed prevents: each worker's own seeded sampler repeats the other's points.
    plain = draws_of([optuna.samplers.TPESampler(seed=0), optuna.samplers.TPESampler(seed=0)])
    assert plain[0] == plain[1]


WORKER = """
import sys, time
from pathlib import Path
import optuna
from sweeps.storage import StudyLock, storage, work
url, n, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
study = optuna.load_study(study_name="race", storage=storage(url, None))
def objective(trial):
    x = trial.suggest_float("x", 0.0, 1.0)
    time.sleep(0.05)
    if trial.number == 4:
        raise RuntimeError("a failing trial")
    return x
print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
print(*work(study, StudyLock(url, "race"), objective, n, max_failed=n))
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_workers_stop_at_exactly_n_trials(backend, tmp_path, request):
    url = request.getfixturevalue("postgres") if backend == "postgresql" else f"sqlite:///{tmp_path / 'sweeps.db'}"
    go = tmp_path / "go"
    study = optuna.create_study(study_name="race", storage=storage(url, None))
    study.enqueue_trial({"x": 0.5})  # a waiting trial (queued, or claimed by a worker that died) is run, not lost
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", WORKER, url, "6", str(go)]
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    assert [w.stdout.readline() for w in workers] == ["ready\n"] * 4
    go.touch()  # all claim at once: without the lock they overshoot (7 or 8 trials when tried)
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0] * 4 and all(out.startswith("FINISHED") for out in outputs)
    trials = optuna.load_study(study_name="race", storage=url).trials
    assert sorted(t.number for t in trials) == list(range(6))
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [4]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 5 and trials[0].params == {"x": 0.5}


def test_an_interrupted_trial_is_replaced_and_not_counted_as_failed(tmp_path):
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    study = optuna.create_study(study_name="race", storage=storage(url, None))
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"interrupted": True}))  # Ctrl-C
    study.add_trial(create_trial(state=TrialState.FAIL))

    def objective(trial):
        return trial.suggest_float("x", 0.0, 1.0)

    assert work(study, StudyLock(url, "race"), objective, n_trials=3, max_failed=1) == ("FINISHED", 1)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2 + [TrialState.COMPLETE] * 2


DYING_WORKER = """
import sys, time
import optuna
from mlflow import MlflowClient
from sweeps.storage import StudyLock, storage, work
url, client = sys.argv[1], MlflowClient(sys.argv[2])
def objective(trial):
    trial.set_user_attr("mlflow_run_id", client.create_run("0").info.run_id)
    time.sleep(1.5)  # the heartbeat thread has beaten
    print("training", flush=True)
    time.sleep(600)
study = optuna.load_study(study_name="race", storage=storage(url, heartbeat_s=1))
work(study, StudyLock(url, "race"), objective, n_trials=1, max_failed=0)
"""


def test_a_trial_whose_worker_died_is_failed_in_optuna_and_mlflow(in_tmp):
    url, client = "sqlite:///sweeps.db", tracking.client(os.environ["MLFLOW_TRACKING_URI"])
    study = optuna.create_study(study_name="race", storage=storage(url, 1, close_dead_worker_runs(client)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", DYING_WORKER, url, os.environ["MLFLOW_TRACKING_URI"]]
    worker = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    assert worker.stdout.readline() == "training\n"
    worker.kill()  # SIGKILL: no chance to tell Optuna or MLflow
    worker.wait()
    [trial] = study.trials
    assert trial.state == TrialState.RUNNING
    deadline = time.monotonic() + 30
    while study.trials[0].state == TrialState.RUNNING and time.monotonic() < deadline:
        time.sleep(1)  # until two heartbeats (of 1 s; SQLite stamps whole seconds) are missed
        optuna.storages.fail_stale_trials(study)  # what the next worker does when it starts
    run = client.get_run(trial.user_attrs["mlflow_run_id"])
    assert study.trials[0].state == TrialState.FAIL
    assert (run.info.status, run.data.tags["trial_state"], run.data.tags["error"]) == (
        "FAILED",
        "FAIL",
        "its worker died",
    )


def test_the_failure_limit_stops_a_worker(tmp_path):
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    study = optuna.create_study(study_name="race", storage=storage(url, None))

    def failing(trial):
        raise RuntimeError("boom")

    assert work(study, StudyLock(url, "race"), failing, n_trials=10, max_failed=2.5) == ("FAILED", 3)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3


def test_report_prints_and_logs_the_best_trial_or_the_pareto_front(in_tmp, capsys):
    client = tracking.client(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.create_experiment("sparse4d_lab")
    for name, values, best in [
        ("smoke", [[0.2, 3.0], [0.4, 1.0], [0.1, 5.0], [0.3, 0.5]], [1, 3]),
        ("detr_ce", [[0.2], [0.4], [0.1], [0.4]], [1]),  # a tie: one best trial, the first
    ]:
        spec = spec_of(name)
        study = optuna.create_study(directions=[o.direction for o in spec.objectives])
        dist = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
        for i, v in enumerate(values):
            study.add_trial(
                create_trial(
                    values=v,
                    params={"optim.lr": 1e-3 * (i + 1)},
                    distributions={"optim.lr": dist},
                    user_attrs={"mlflow_run_id": f"run{i}"},
                )
            )
        study.add_trial(create_trial(state=TrialState.FAIL))
        parent = client.create_run(exp).info.run_id
        cfg = OmegaConf.create({"study_name": name, "storage": "sqlite:///sweeps.db", "n_trials": 5})
        report(study, spec, client, parent, cfg, "FINISHED")
        out = capsys.readouterr().out
        assert (
            f"Study '{name}'" in out
            and f"{len(values) + 1} of n_trials=5 trials, {len(values)} complete, 1 fail" in out
        )
        assert ("Pareto front" if len(best) > 1 else "Best trial") in out
        rows = json.loads(Path(client.download_artifacts(parent, "best_trials.json", str(in_tmp))).read_text())
        assert [r["trial"] for r in rows] == best and rows[0]["mlflow_run_id"] == f"run{best[0]}"
        run = client.get_run(parent)
        assert run.info.status == "FINISHED" and run.data.tags["best_trials"] == ",".join(map(str, best))
        if len(best) == 1:
            assert run.data.metrics["best/val/mAP"] == 0.4


def env_of(cache: Path) -> dict[str, str]:
    env = {**os.environ, "SPARSE4D_LAB_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def command(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "sweeps.run", "+sweep=smoke", *overrides]


@pytest.mark.slow
def test_smoke_sweep_end_to_end_then_two_workers_resume_it(tmp_path, cache, empty_store):
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    shutil.copy(empty_store, work_dir / "mlflow.db")
    first = subprocess.run(command("n_trials=3"), cwd=work_dir, env=env_of(cache), capture_output=True, text=True)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    assert "Pareto front (maximize val/mAP, minimize val/hc_fp_cls_per_frame)" in first.stdout
    url = f"sqlite:///{work_dir / 'sweeps.db'}"
    study = optuna.load_study(study_name="smoke", storage=url)
    trials = study.trials
    assert [(t.number, t.state) for t in trials] == [(i, TrialState.COMPLETE) for i in range(3)]
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 3
    client = MlflowClient(tracking_uri=f"sqlite:///{work_dir / 'mlflow.db'}")
    [parent] = sweep_runs(client)
    assert parent.info.status == "FINISHED"
    assert (parent.data.tags["sweep"], parent.data.tags["optuna_study"], parent.data.tags["n_trials"]) == (
        "smoke",
    ) * 2 + ("3",)
    assert {"best_trials.md", "best_trials.json"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    children = trial_runs(client, parent.info.run_id)
    assert [c.data.tags["trial_number"] for c in children] == ["0", "1", "2"]
    for child, trial in zip(children, trials, strict=True):
        assert child.info.status == "FINISHED" and child.data.tags["trial_state"] == "COMPLETE"
        assert (child.data.tags["kind"], child.data.tags["sweep"], child.data.tags["arm"]) == (
            "trial",
            "smoke",
            trial.params["loss"],
        )
        assert child.info.run_id == trial.user_attrs["mlflow_run_id"]
        assert json.loads(child.data.tags["trial_params"]) == trial.params
        knobs = {("loss.arm" if k == "loss" else k): str(v) for k, v in trial.params.items()}  # loss: a group
        assert {k: child.data.params[k] for k in knobs} == knobs  # the knobs reached the job
        assert child.data.params["trainer.limit_train_batches"] == "1" and child.data.params["seed"] == "0"
        assert {f"val/{m}" for m in metric_names([0.05, 0.3, 0.5])} <= set(child.data.metrics)
        assert trial.values == pytest.approx(
            [child.data.metrics["val/mAP"], child.data.metrics["val/hc_fp_cls_per_frame"]]
        )
        assert child.data.metrics["train_time_s"] > 0 and "test/mAP" in child.data.metrics

    # Re-run with a larger target, as two workers at once: they resume the same study and share its last trials.
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    with open(logs[0], "w") as out0, open(logs[1], "w") as out1:
        workers = [
            subprocess.Popen(command("n_trials=5"), cwd=work_dir, env=env_of(cache), stdout=out, stderr=out)
            for out in (out0, out1)
        ]
        codes = [worker.wait(timeout=900) for worker in workers]
    assert codes == [0, 0], "\n".join(log.read_text()[-3000:] for log in logs)
    resumed = optuna.load_study(study_name="smoke", storage=url)
    assert resumed._study_id == study._study_id
    assert [(t.number, t.state) for t in resumed.trials] == [(i, TrialState.COMPLETE) for i in range(5)]
    assert [(t.params, t.datetime_start) for t in resumed.trials[:3]] == [(t.params, t.datetime_start) for t in trials]
    assert len({json.dumps(t.params, sort_keys=True) for t in resumed.trials}) == 5
    [again] = sweep_runs(client)
    assert again.info.run_id == parent.info.run_id and again.info.status == "FINISHED"
    assert [c.data.tags["trial_number"] for c in trial_runs(client, parent.info.run_id)] == ["0", "1", "2", "3", "4"]
    _, *worker_dirs = sorted((work_dir / "outputs" / "sweeps" / "smoke").iterdir())  # the first run's, the workers'
    ran = [sorted(p.name for p in d.glob("trial_*")) for d in worker_dirs]
    assert sorted(ran) == [["trial_0003"], ["trial_0004"]]  # each worker ran one of the two new trials

    # optuna-dashboard on the sweep's database answers with its trials (its JSON API, as the page reads it).
    port = free_port()
    dashboard = [str(Path(sys.executable).with_name("optuna-dashboard")), url, "--host", "127.0.0.1"]
    dashboard += ["--port", str(port)]
    with serving(dashboard, f"http://127.0.0.1:{port}/api/studies", tmp_path / "dashboard.log") as api:
        [listed] = json.load(urllib.request.urlopen(api, timeout=30))["study_summaries"]
        assert (listed["study_name"], listed["directions"]) == ("smoke", ["maximize", "minimize"])
        detail = json.load(urllib.request.urlopen(f"{api}/{listed['study_id']}", timeout=30))
    shown = {t["number"]: t for t in detail["trials"]}
    assert sorted(shown) == list(range(5))
    for trial in resumed.trials:
        assert shown[trial.number]["state"] == "Complete" and shown[trial.number]["values"] == trial.values
        assert {p["name"]: p["param_external_value"] for p in shown[trial.number]["params"]} == {
            k: str(v) for k, v in trial.params.items()
        }


@pytest.mark.slow
def test_a_diverging_trial_fails_a_pruned_one_is_pruned_and_the_sweep_completes(in_tmp, monkeypatch):
    real = sweeps.trial.fit_and_test
    calls = []

    def first_diverges(cfg, *args, **kwargs):
        calls.append(cfg)
        if len(calls) == 1:
            cfg.train.max_loss = 1e-9  # the module's finite-loss guard stops the first step: a real divergence
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(sweeps.trial, "fit_and_test", first_diverges)
    pruner = "sweep.pruner={_target_: optuna.pruners.ThresholdPruner, lower: 2.0}"  # mAP <= 1: pruned at once
    two_epochs = "overrides=['trainer.max_epochs=2']"
    study = run_sweep(
        app_cfg(in_tmp, "+sweep=smoke", "n_trials=2", "max_failure_rate=0.5", two_epochs, *SINGLE, pruner)
    )
    failed, pruned = study.trials
    assert failed.state == TrialState.FAIL and failed.user_attrs["error"].startswith("DivergedError: loss")
    assert pruned.state == TrialState.PRUNED and list(pruned.intermediate_values) == [0]
    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    [parent] = sweep_runs(client)
    assert parent.info.status == "FINISHED"
    assert (parent.data.tags["trials_fail"], parent.data.tags["trials_pruned"]) == ("1", "1")
    first, second = trial_runs(client, parent.info.run_id)
    assert (first.info.status, first.data.tags["trial_state"]) == ("FAILED", "FAIL")
    assert first.data.tags["error"] == failed.user_attrs["error"]
    assert (second.info.status, second.data.tags["trial_state"]) == ("KILLED", "PRUNED")
    assert "epoch 0" in second.data.tags["pruned"]
    assert len(client.get_metric_history(second.info.run_id, "val/mAP")) == 1  # stopped after its first epoch of 2
    assert "test/mAP" not in second.data.metrics
