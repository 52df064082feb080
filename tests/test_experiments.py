import dataclasses
import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from mlflow import MlflowClient
from omegaconf import OmegaConf, open_dict

from experiments.build import build_components, validate
from experiments.callbacks import StudyCallback, study_parent
from experiments.job_run import job_identity
from experiments.resources import MULTIRUN_JOBS_ENV, cpu_ranks, share_cores
from sparse4d_lab.data.config import CLASSES
from sparse4d_lab.errors import ConfigError
from sparse4d_lab.model.config import ModelConfig, tao_r101, tiny
from sparse4d_lab.model.sparse4d import Sparse4D
from sparse4d_lab.semantics import profile
from sparse4d_lab.supervision.schemes import REGISTRY

CONF = Path(__file__).parents[1] / "experiments" / "conf"


def names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One synthetic-data cache for the module: every arm builds on the same smoke data."""
    return tmp_path_factory.mktemp("cache")


def compose_cfg(overrides: list[str], tmp_path: Path, cache: Path | None = None):
    cache = cache or tmp_path / "cache"
    with initialize_config_module("experiments.conf", version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"data.cache_dir={cache}"], return_hydra_config=True)
    # Resolve ${hydra:...} outside a running app.
    OmegaConf.update(cfg, "paths.root", str(tmp_path), force_add=True)
    OmegaConf.update(cfg, "paths.output_dir", str(tmp_path / "out"), force_add=True)
    return cfg


@pytest.mark.parametrize("study", names("ab"))
def test_every_study_composes_and_sweeps_known_arms(study, tmp_path):
    cfg = compose_cfg([f"+ab={study}"], tmp_path)
    assert cfg.ab == study
    assert cfg.hydra.mode.name == "MULTIRUN"
    arms = cfg.hydra.sweeper.params.loss.split(",")
    assert set(arms) <= set(names("loss")) and cfg.baseline in arms
    assert len(cfg.hydra.sweeper.params.seed.split(",")) == 3
    # Jobs side by side, each with its share of the cores; a DDP study must run them one at a time.
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2
    with pytest.raises(ConfigError, match=r"trainer=ddp: .* add hydra/launcher=basic"):
        StudyCallback().on_multirun_start(compose_cfg([f"+ab={study}", "trainer=ddp"], tmp_path))


def test_a_study_expects_every_seed_and_arm_it_was_run_with(tmp_path):
    cfg = compose_cfg(["+ab=loss_fix"], tmp_path)
    OmegaConf.update(cfg, "logger.tracking_uri", f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient(tracking_uri=cfg.logger.tracking_uri)
    parent = study_parent(cfg, cfg.hydra)
    tags = client.get_run(parent).data.tags
    assert (tags["arms"], tags["seeds"]) == ("focal_filtered,focal_onehot", "0,1,2")
    # More seeds on the command line replace the study file's list (Hydra) and join the same study.
    task = [*cfg.hydra.overrides.task, "seed=range(3,6)"]
    OmegaConf.update(cfg, "hydra.overrides.task", task)
    assert study_parent(cfg, cfg.hydra) == parent
    assert client.get_run(parent).data.tags["seeds"] == "0,1,2,3,4,5"
    OmegaConf.update(cfg, "hydra.overrides.task", [*task, "loss=detr_ce"])
    assert study_parent(cfg, cfg.hydra) == parent
    tags = client.get_run(parent).data.tags
    assert (tags["arms"], tags["seeds"]) == ("focal_filtered,focal_onehot,detr_ce", "0,1,2,3,4,5")
    # A study re-run for its tables only (figures=false) is the same study, reached by the same command.
    OmegaConf.update(cfg, "hydra.overrides.task", [*task, "figures=false"])
    assert study_parent(cfg, cfg.hydra) == parent
    assert "figures" not in client.get_run(parent).data.tags["command"]


def test_what_a_study_reports_is_not_part_of_its_jobs_identity(tmp_path):
    # Re-running a study with figures=false or other primary outcomes must find its finished jobs, not retrain.
    def identity(*overrides: str) -> dict:
        cfg = compose_cfg(["+ab=loss_fix", *overrides], tmp_path)
        with open_dict(cfg):
            del cfg.hydra  # a job's config has no hydra node
        return job_identity(cfg)

    assert identity("figures=false", "primary=[test/NDS]") == identity()
    assert identity("seed=1") != identity()


def test_a_job_gets_its_share_of_the_cores(tmp_path):
    assert cpu_ranks(compose_cfg(["trainer=ddp"], tmp_path).trainer) == (1 if torch.cuda.is_available() else 2)
    assert cpu_ranks(compose_cfg(["trainer=gpu"], tmp_path).trainer) == 1
    before = torch.get_num_threads()
    try:
        assert share_cores(1) == torch.get_num_threads() == 1
        cores = len(os.sched_getaffinity(0))
        assert share_cores(None) == cores  # outside a launcher: one job, every core
        assert share_cores(None, ranks=cores) == 1  # one core per CPU rank of a DDP job
    finally:
        torch.set_num_threads(before)


def test_a_multirun_with_fewer_jobs_than_the_launcher_runs_at_once_keeps_the_cores(tmp_path, monkeypatch):
    monkeypatch.setenv(MULTIRUN_JOBS_ENV, "")  # restored after the test: the callback writes the real count
    cfg = compose_cfg(["hydra/launcher=local"], tmp_path)  # joblib, 2 jobs at once
    OmegaConf.update(cfg, "hydra.overrides.task", ["loss=focal_onehot,detr_ce", "seed=range(0,3)"])
    StudyCallback().on_multirun_start(cfg)  # not a study: only counts the jobs
    assert os.environ[MULTIRUN_JOBS_ENV] == "6"
    before, cores = torch.get_num_threads(), len(os.sched_getaffinity(0))
    HydraConfig.instance().set_config(cfg)
    try:
        assert share_cores(None) == max(1, cores // 2)
        monkeypatch.setenv(MULTIRUN_JOBS_ENV, "1")  # e.g. +ab=loss_fix loss=focal_onehot seed=0
        assert share_cores(None) == cores
    finally:
        HydraConfig.instance().cfg = None
        torch.set_num_threads(before)


@pytest.mark.parametrize("arm", names("loss"))
def test_every_arm_instantiates(arm, tmp_path, cache):
    cfg = compose_cfg([f"loss={arm}", "debug=smoke"], tmp_path, cache)
    validate(cfg)
    assert cfg.loss.arm == arm and cfg.loss.scheme in REGISTRY
    _, module = build_components(cfg)
    assert module.model.num_logits == module.criterion.scheme.num_logits
    assert (module.model.query_generator is not None) == bool(cfg.loss.paq.patterns)
    assert module.criterion.quality_assign == bool(cfg.loss.paq.assignment)


def test_an_arm_replaces_the_loss_config(tmp_path):
    detr = compose_cfg(["loss=detr_ce"], tmp_path).loss
    assert "alpha" not in detr.options and "eos_coef" in detr.options  # no stale focal keys


@pytest.mark.parametrize(("name", "preset"), [("tiny", tiny), ("tao_r101", tao_r101)])
def test_model_configs_equal_their_presets_and_build(name, preset, tmp_path):
    # A preset's file lists only what it changes from ModelConfig's defaults (model_schema) and says so first.
    changes = OmegaConf.to_container(OmegaConf.load(CONF / "model" / f"{name}.yaml"))
    assert changes.pop("defaults") == ["/model_schema", "_self_"]
    defaults = dataclasses.asdict(ModelConfig())
    assert all(defaults[k] != (tuple(v) if isinstance(v, list) else v) for k, v in changes.items())
    assert dataclasses.asdict(ModelConfig(**{**defaults, **changes})) == dataclasses.asdict(preset())
    # A job's model is the preset with its semantics profile's rules (tao by default), fine-tuned with the
    # backbone's norms frozen (init=pretrained).
    cfg = compose_cfg([f"model={name}"], tmp_path)
    config = ModelConfig(**OmegaConf.to_container(cfg.model))
    expected = preset(**profile("tao")["model"], freeze_backbone_norm=True)
    assert dataclasses.asdict(config) == dataclasses.asdict(expected)
    model = Sparse4D(config, len(CLASSES))
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize(("init", "lr", "backbone_lr_mult"), [("pretrained", 1e-4, 0.25), ("scratch", 1e-3, 0.5)])
def test_init_brings_its_schedule(init, lr, backbone_lr_mult, tmp_path):
    """Fine-tuning follows TAO's experiment spec (AdamW 1e-4, backbone 0.25x); from scratch, Sparse4D's 1e-3, 0.5x."""
    cfg = compose_cfg([f"init={init}"], tmp_path)
    assert cfg.init.mode == init and (cfg.optim.lr, cfg.optim.backbone_lr_mult) == (lr, backbone_lr_mult)
    assert cfg.trainer.max_epochs == 4 and cfg.train.batch_size == 2  # the study's budget either way
    assert cfg.data.warehouse.seed == 0
    assert cfg.model.freeze_backbone_norm is (init == "pretrained")  # TAO fixes a pretrained backbone's norms


def test_pretrain_composes_on_the_source_domain_and_debug_still_shortens_it(tmp_path):
    with initialize_config_module("experiments.conf", version_base="1.3"):
        cfg = compose("pretrain", return_hydra_config=True)
        smoke = compose("pretrain", overrides=["debug=smoke"])
    target = compose_cfg([], tmp_path).data.warehouse
    source = cfg.data.warehouse
    assert source.seed != target.seed and source.scenes.train > target.scenes.train
    assert source.camera_height[0] < target.camera_height[0] and source.camera_height[1] > target.camera_height[1]
    assert cfg.init.mode == "scratch" and cfg.loss.arm == "focal_onehot" and cfg.train.batch_size == 8
    assert smoke.trainer.limit_train_batches == 4 and smoke.data.warehouse.scenes.train == 2


@pytest.mark.parametrize("trainer", names("trainer"))
def test_trainer_configs_compose(trainer, tmp_path):
    cfg = compose_cfg([f"trainer={trainer}"], tmp_path)
    assert cfg.trainer.use_distributed_sampler is False  # the temporal sampler shards sequences itself


def test_bad_configs_fail_early_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"loss\.scheme: unknown scheme 'focal'; valid: detr_ce, focal_filtered"):
        validate(compose_cfg(["loss.scheme=focal"], tmp_path))
    with pytest.raises(ConfigError, match=r"loss\.options: \['eos_coef'\]"):
        validate(compose_cfg(["loss=focal_onehot", "+loss.options.eos_coef=0.1"], tmp_path))
    with pytest.raises(ConfigError, match=r"data\.epochs_per_pass: must be >= 1"):
        validate(compose_cfg(["data.epochs_per_pass=0"], tmp_path))
    with pytest.raises(ConfigError, match=r"threads: must be >= 1, or null"):
        validate(compose_cfg(["threads=0"], tmp_path))
    with pytest.raises(ConfigError, match=r"data\.warehouse\.num_cameras"):
        validate(compose_cfg(["data.warehouse.num_cameras=0"], tmp_path))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.max_epochs=-1"], "trainer.max_epochs: must be a whole number >= 1"),
        (["+optim.lrr=1e-3"], "optim.lrr (did you mean optim.lr?)"),
        (["optim.warmup_ratio=1.5"], "optim.warmup_ratio: must be a number in [0, 1]"),
        (["seed=abc"], "seed: must be a whole number >= 0; got 'abc'"),
        (["seed=-1"], "seed: must be a whole number >= 0; got -1"),
        (["+foo=1"], "unknown config key(s) foo; valid top-level keys"),
        (["+trainer.max_epoch=3"], "trainer.max_epoch (did you mean trainer.max_epochs?)"),
        (["+train.batchsize=4"], "train.batchsize (did you mean train.batch_size?)"),
        (["train.batch_size=0"], "train.batch_size: must be a whole number >= 1"),
        (["primary=[test/mAp]"], "primary: 'test/mAp' is no metric a job logs (did you mean test/mAP?)"),
    ],
)
def test_unknown_keys_and_impossible_numbers_fail_before_any_run(overrides, message, tmp_path):
    from experiments.job import train_job

    cfg = compose_cfg([*overrides, f"logger.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"], tmp_path)
    with pytest.raises(ConfigError) as info:
        train_job(cfg)
    assert message in str(info.value)
    assert not (tmp_path / "mlflow.db").exists()  # no run was opened


def test_a_folder_that_cannot_be_written_fails_before_any_run(tmp_path):
    from experiments.job import train_job

    (tmp_path / "a_file").write_text("")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_cfg([f"paths.checkpoints={tmp_path / 'a_file' / 'ckpt'}", f"logger.tracking_uri={uri}"], tmp_path)
    with open_dict(cfg):
        del cfg["hydra"]  # as in a running app
    with pytest.raises(ConfigError, match=r"paths\.checkpoints: .*a_file/ckpt/[0-9a-f]+ is not a writable folder"):
        train_job(cfg)
    assert not (tmp_path / "mlflow.db").exists()


def test_slurm_launcher_asks_for_one_task_per_device(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose_cfg(["+ab=loss_fix", "hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=2"], tmp_path)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node) == (2, 2) and launcher.max_num_timeout > 0


def test_lightning_epochs_take_their_share_of_a_pass(tmp_path, cache):
    """Lightning never sets a batch sampler's epoch itself: every epoch would replay epoch 0's share."""
    import lightning.pytorch as pl

    cfg = compose_cfg(["debug=smoke", "data.epochs_per_pass=2"], tmp_path, cache)
    datamodule, module = build_components(cfg)
    seen: dict[int, set[int]] = {}

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.setdefault(trainer.current_epoch, set()).update(batch["sequence_id"].tolist())

    trainer = pl.Trainer(
        max_epochs=4, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[Record()],
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    assert all(len(seen[e]) == 1 for e in range(4))  # 2 training sequences, 1 batch slot: one per epoch
    assert seen[0] | seen[1] == seen[2] | seen[3] == {0, 1}


def test_lightning_cannot_end_a_jobs_run(tmp_path):
    """Lightning finalizes its logger FAILED on a Ctrl-C and FINISHED before the test: the job sets the status."""
    from mlflow import MlflowClient

    from experiments.job import JobLogger

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    logger = JobLogger(experiment_name="e", tracking_uri=uri, run_id=run_id)
    logger.log_metrics({"m": 1.0}, step=0)
    for status in ("failed", "success"):
        logger.finalize(status)
        assert client.get_run(run_id).info.status == "RUNNING"
