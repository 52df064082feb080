"""``python -m sweeps.run +sweep=NAME [n_trials=N] [storage=URL]``: an Optuna study over one arm's knobs.

Each trial composes the experiment config (``experiments/conf``) with the trial's knobs, trains and evaluates it like
``experiments.run`` and reports its validation metrics. Re-running the command resumes the study; workers started
with the same study name and storage share it until it holds ``n_trials`` trials. MLflow: a parent run per study, a
child run per trial; the best trial or Pareto front is printed and logged on the parent.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hydra
import optuna
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from hydra.utils import instantiate
from mlflow.entities import Metric
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState

from experiments import tracking
from experiments.build import validate
from sparse4d_lab.errors import ConfigError

from .space import SweepSpec
from .storage import StudyLock, TrialSeededSampler, display_url, storage, work
from .trial import Objective, TrialContext, close_dead_worker_runs

SWEEPS = Path(__file__).parent / "conf" / "sweep"


class SweepError(RuntimeError):
    """The sweep stopped before its target: too many trials failed."""


@contextmanager
def experiment_configs() -> Iterator[None]:
    """Within: ``hydra.compose`` composes from ``experiments/conf``. Hydra keeps one global instance, this app's
    own while it runs: it is set aside and put back."""
    own = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("experiments.conf", version_base="1.3"):
            yield
    finally:
        if own is not None:
            GlobalHydra.instance().initialize(own)


def compose_experiment(overrides: list[str], root: str, output_dir: Path) -> DictConfig:
    """The experiment config ``train`` with ``overrides`` (inside ``experiment_configs``). A composed config has no
    Hydra runtime, so the paths that come from it are set here."""
    cfg = hydra.compose("train", overrides=overrides)
    OmegaConf.update(cfg, "paths.root", root, force_add=True)
    OmegaConf.update(cfg, "paths.output_dir", str(output_dir), force_add=True)
    return cfg


def experiment_groups(name: str) -> list[str]:
    """Options of ``name`` if it is a config group of the experiment config (``loss``), else []."""
    return GlobalHydra.instance().config_loader().get_group_options(name) if "." not in name else []


def check_settings(cfg: DictConfig) -> SweepSpec:
    """This app's own settings and the sweep's declaration, before anything is composed or created."""
    if cfg.get("sweep") is None:
        names = ", ".join(sorted(p.stem for p in SWEEPS.glob("*.yaml")))
        raise ConfigError(f"sweep: none chosen; add +sweep=NAME, NAME one of: {names}")
    if int(cfg.n_trials) < 1:
        raise ConfigError(f"n_trials: the study's total number of trials, must be >= 1, got {cfg.n_trials}")
    if not 0 <= float(cfg.max_failure_rate) <= 1:
        raise ConfigError(f"max_failure_rate: a fraction of n_trials in [0, 1], got {cfg.max_failure_rate}")
    spec = SweepSpec.parse(cfg.sweep)
    if not cfg.study_name:
        raise ConfigError(
            f"study_name: expected a name (by default the sweep's, {spec.name!r}), got {cfg.study_name!r}"
        )
    return spec


def single_process(trainer: DictConfig) -> None:
    """Trials train in one process: Lightning's DDP would start every rank by re-running the sweep command, and
    pruning across ranks needs extra handling (optuna-integration's ``check_pruned``). More devices: more workers."""
    if str(trainer.devices) != "1" or int(trainer.num_nodes) != 1 or "ddp" in str(trainer.strategy):
        raise ConfigError(
            f"trainer: a trial trains in one process, got devices={trainer.devices}, num_nodes={trainer.num_nodes}, "
            f"strategy={trainer.strategy}; start one sweep worker per device instead (CUDA_VISIBLE_DEVICES=k)"
        )


def build(node: DictConfig, key: str, **kwargs: object) -> object:
    try:
        return instantiate(node, **kwargs)
    except HydraException as err:
        raise ConfigError(f"{key}: cannot build {node.get('_target_')}: {err}") from err


def run_sweep(cfg: DictConfig) -> optuna.Study:
    """Run this worker's share of the study (``cfg``: this app's config); returns the study."""
    spec = check_settings(cfg)
    with experiment_configs():
        return _run(cfg, spec)


def _run(cfg: DictConfig, spec: SweepSpec) -> optuna.Study:
    extra = [*cfg.overrides, f"seed={int(cfg.seed)}"]  # after the sweep's fixed overrides: the command line wins
    output_dir = Path(cfg.output_dir)
    base = spec.check(lambda o: compose_experiment(o, cfg.root, output_dir), experiment_groups, extra)
    validate(base)
    single_process(base.trainer)
    pruner = build(OmegaConf.create(spec.pruner), "sweep.pruner") if spec.pruner else optuna.pruners.NopPruner()
    sampler = TrialSeededSampler(lambda s: build(cfg.sampler, "sampler", seed=s), int(cfg.sampler.seed))
    identity = json.dumps(spec.identity(extra), sort_keys=True)
    lock = StudyLock(cfg.storage, cfg.study_name)
    uri = tracking.tracking_uri(base.logger.tracking_uri)
    mlflow = tracking.client(uri)
    # One worker at a time creates the stores, the study and the parent run. Heartbeats and metric names are
    # "experimental" in Optuna: both have been stable since 3.x and the dashboard shows the names.
    with lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(
            storage=storage(cfg.storage, cfg.heartbeat_s, close_dead_worker_runs(mlflow)),
            study_name=cfg.study_name,
            directions=[o.direction for o in spec.objectives],
            sampler=sampler,
            pruner=pruner,
            load_if_exists=True,
        )
        stored = study.user_attrs.get("sweep")
        if stored is not None and stored != identity:
            raise ConfigError(
                f"study_name: study {cfg.study_name!r} in {display_url(cfg.storage)} was run with other knobs, "
                f"objectives, fixed overrides or seed ({stored}); resume it with those, or start a new study_name=..."
            )
        study.set_user_attr("sweep", identity)
        study.set_metric_names([o.key for o in spec.objectives])
        optuna.storages.fail_stale_trials(study)  # trials of workers that died: FAIL, not RUNNING, before counting
        exp_id = tracking.experiment_id(mlflow, base.logger.experiment)
        parent = parent_run(mlflow, exp_id, spec, cfg)
    context = TrialContext(
        spec,
        cfg.study_name,
        lambda o, d: compose_experiment(o, cfg.root, d),
        [*spec.fixed, *extra],
        output_dir,
        mlflow,
        uri,
        exp_id,
        parent,
    )
    max_failed = float(cfg.max_failure_rate) * int(cfg.n_trials)
    status = "FAILED"  # if this worker stops on an error
    try:
        status, failed = work(study, lock, Objective(context), int(cfg.n_trials), max_failed)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        report(study, spec, mlflow, parent, cfg, status)
    if status == "FAILED":
        raise SweepError(
            f"{failed} trials of study {cfg.study_name!r} failed, more than max_failure_rate={cfg.max_failure_rate} "
            f"x n_trials={cfg.n_trials}: see the failed trials' error (a tag in MLflow, a user attribute in Optuna)"
        )
    return study


def parent_run(mlflow: tracking.Store, exp_id: str, spec: SweepSpec, cfg: DictConfig) -> str:
    """The study's MLflow parent run: found by study name and storage, else created (call under the lock)."""
    where = display_url(cfg.storage)
    key = tracking.config_hash({"study": cfg.study_name, "storage": where})
    existing = tracking.find_runs(mlflow, exp_id, f"tags.kind = 'sweep' and tags.sweep_key = '{key}'")
    if existing:
        run_id = existing[0].info.run_id
        mlflow.update_run(run_id, status="RUNNING")
    else:
        tags = {
            "kind": "sweep",
            "sweep": spec.name,
            "sweep_key": key,
            "optuna_study": cfg.study_name,
            "optuna_storage": where,
            "objectives": ", ".join(f"{o.direction} {o.key}" for o in spec.objectives),
            "knobs": ", ".join(p.name for p in spec.params),
            MLFLOW_RUN_NAME: f"sweep:{cfg.study_name}",
        }
        run_id = mlflow.create_run(exp_id, tags=tags).info.run_id
    mlflow.set_tag(run_id, "n_trials", str(cfg.n_trials))
    return run_id


def front_table(spec: SweepSpec, best: list[FrozenTrial]) -> str:
    """The best trial (one objective) or the Pareto front (several) as a Markdown table."""
    names = [o.key for o in spec.objectives]
    knobs = [p.name for p in spec.params if any(p.name in t.params for t in best)]
    rows = [
        "| trial | " + " | ".join([*names, *knobs, "MLflow run"]) + " |",
        "|---" * (len(names) + len(knobs) + 2) + "|",
    ]
    for t in sorted(best, key=lambda t: t.number):
        cells = [f"{v:.4g}" for v in t.values] + [_cell(t.params.get(k)) for k in knobs]
        rows.append(f"| {t.number} | " + " | ".join([*cells, t.user_attrs.get("mlflow_run_id", "")]) + " |")
    return "\n".join(rows)


def _cell(value: object) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def report(
    study: optuna.Study, spec: SweepSpec, mlflow: tracking.Store, parent: str, cfg: DictConfig, status: str
) -> None:
    """Print the best trial or Pareto front and log it on the parent run; the last worker out closes the run."""
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials)
    directions = ", ".join(f"{o.direction} {o.key}" for o in spec.objectives)
    best = (study.best_trials if len(spec.objectives) > 1 else [study.best_trial]) if states["COMPLETE"] else []
    title = "Best trial" if len(spec.objectives) == 1 else "Pareto front"
    text = (
        f"Study {cfg.study_name!r} ({display_url(cfg.storage)}): {len(trials)} of n_trials={cfg.n_trials} trials, "
        + ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))
        + f"\n{title} ({directions}):\n"
        + (front_table(spec, best) if best else "no complete trial yet")
    )
    print(text)
    rows = [
        {
            "trial": t.number,
            "values": dict(zip([o.key for o in spec.objectives], t.values, strict=True)),
            "params": t.params,
            "mlflow_run_id": t.user_attrs.get("mlflow_run_id"),
        }
        for t in best
    ]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "best_trials.md").write_text(text + "\n")
        (Path(tmp) / "best_trials.json").write_text(json.dumps(rows, indent=1))
        for name in ("best_trials.md", "best_trials.json"):
            mlflow.log_artifact(parent, str(Path(tmp) / name))
    tags = {
        "best_trials": ",".join(str(t.number) for t in best),
        **{f"trials_{s.name.lower()}": str(states[s.name]) for s in TrialState},
    }
    mlflow.set_tags(parent, tags)
    if len(best) == 1:
        metrics = [
            Metric(f"best/{o.key}", v, 0, best[0].number) for o, v in zip(spec.objectives, best[0].values, strict=True)
        ]
        mlflow.log_batch(parent, metrics=metrics)
    if states["RUNNING"] == 0:  # other workers' trials still running: the last worker out closes the parent
        mlflow.set_terminated(parent, status)


@hydra.main(version_base="1.3", config_path="conf", config_name="sweeps")
def main(cfg: DictConfig) -> None:
    run_sweep(cfg)


if __name__ == "__main__":
    main()
