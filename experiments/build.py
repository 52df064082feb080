"""Config -> objects: validate a job's config early, then build its data, model, criterion and LightningModule."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from sparse4d_lab.data import (
    MtmcConfig,
    MtmcSource,
    OvpklConfig,
    OvpklSource,
    SceneDataModule,
    SceneSource,
    WarehouseConfig,
    WarehouseSource,
)
from sparse4d_lab.data.real import config_from_mapping
from sparse4d_lab.errors import ConfigError
from sparse4d_lab.eval.collector import EvalCollector
from sparse4d_lab.lit import OptimConfig, Sparse4DModule
from sparse4d_lab.model.anchors import anchors_from_gt
from sparse4d_lab.model.config import ModelConfig
from sparse4d_lab.model.pattern_queries import PatternQueries
from sparse4d_lab.model.pretrained import check_fits, load_base, read_provenance
from sparse4d_lab.model.sparse4d import Sparse4D
from sparse4d_lab.supervision.criterion import Sparse4DCriterion
from sparse4d_lab.supervision.schemes import REGISTRY, build_scheme

from .checks import check_keys_and_numbers

DATA_SOURCES = ("synthetic", "mtmc", "ovpkl")
INIT_MODES = ("pretrained", "scratch")
SHIPPED_BASE = Path(__file__).resolve().parents[1] / "bases" / "tiny.pt"  # made by python -m experiments.pretrain

log = logging.getLogger(__name__)


def _plain(node) -> dict:
    return OmegaConf.to_container(node, resolve=True) if node is not None else {}


def data_source(cfg: DictConfig) -> SceneSource:
    """The job's scenes: the synthetic warehouse, MTMC_Tracking_2025 scenes or OVPKL files (validated here)."""
    data = _plain(cfg.data)
    source = data.pop("source")
    data.pop("epochs_per_pass", None)  # the sampler's, not the scenes'
    if source == "synthetic":
        return WarehouseSource(WarehouseConfig(**data["warehouse"]), data.get("cache_dir"))
    if "warehouse" in data:
        raise ConfigError(
            f"data.warehouse: synthetic-data settings (e.g. from debug=smoke) do not apply to data={source}; "
            "leave them out and shorten a run with data.max_frames / data.frame_stride instead"
        )
    if source == "mtmc":
        return MtmcSource(config_from_mapping(MtmcConfig, data))
    return OvpklSource(config_from_mapping(OvpklConfig, data))


def base_path(cfg: DictConfig) -> Path | None:
    """The base a job starts from (``init.path``, relative to the working directory; null: the shipped base), or
    None for ``init=scratch``."""
    init = cfg.get("init") or {}
    mode = init.get("mode", "scratch")
    if mode not in INIT_MODES:
        raise ConfigError(f"init.mode: unknown mode {mode!r}; valid: {', '.join(INIT_MODES)} (init=pretrained|scratch)")
    if mode == "scratch":
        return None
    return Path(init.path).expanduser().absolute() if init.get("path") else SHIPPED_BASE


def validate(cfg: DictConfig) -> None:
    """Fail before any work, naming the key and the fix."""
    check_keys_and_numbers(cfg)
    if cfg.loss.scheme not in REGISTRY:
        raise ConfigError(f"loss.scheme: unknown scheme {cfg.loss.scheme!r}; valid: {', '.join(sorted(REGISTRY))}")
    accepted = set(inspect.signature(REGISTRY[cfg.loss.scheme].__init__).parameters) - {"self", "num_classes"}
    unknown = set(cfg.loss.options or {}) - accepted
    if unknown:
        raise ConfigError(
            f"loss.options: {sorted(unknown)} not accepted by {cfg.loss.scheme}; valid: {sorted(accepted)}"
        )
    if cfg.data.source not in DATA_SOURCES:
        raise ConfigError(f"data.source: unknown source {cfg.data.source!r}; valid: {', '.join(DATA_SOURCES)}")
    if int(cfg.data.get("epochs_per_pass", 1)) < 1:
        raise ConfigError(
            f"data.epochs_per_pass: must be >= 1 (1 = an epoch is a whole pass), got {cfg.data.epochs_per_pass}"
        )
    if cfg.get("threads") is not None and int(cfg.threads) < 1:
        raise ConfigError(f"threads: must be >= 1, or null for the cores / jobs side by side; got {cfg.threads}")
    data_source(cfg)
    model_cfg = ModelConfig(**_plain(cfg.model))
    base = base_path(cfg)
    if base is not None:
        check_fits(read_provenance(base), model_cfg, base)


def build_components(cfg: DictConfig) -> tuple[SceneDataModule, Sparse4DModule]:
    """The data module and the LightningModule of one job (call after seeding: model init draws random numbers)."""
    datamodule = SceneDataModule(
        data_source(cfg),
        batch_size=cfg.train.batch_size,
        eval_batch_size=cfg.train.eval_batch_size,
        num_workers=cfg.train.num_workers,
        clip_len=cfg.train.clip_len,
        epochs_per_pass=int(cfg.data.get("epochs_per_pass", 1)),
        seed=int(cfg.seed),
    )
    datamodule.prepare_data()
    train = datamodule.dataset("train")
    num_classes = datamodule.num_classes
    scheme = build_scheme(cfg.loss.scheme, num_classes, **_plain(cfg.loss.options))
    model_cfg = ModelConfig(**_plain(cfg.model))
    paq = cfg.loss.paq
    generator = None
    if paq.patterns:
        generator = PatternQueries(
            num_anchor=model_cfg.num_anchor,
            embed_dims=model_cfg.embed_dims,
            feature_channels=model_cfg.embed_dims,
            num_patterns=paq.num_patterns,
            hidden=paq.hidden,
            diversity_weight=paq.diversity_weight,
        )
    model = Sparse4D(model_cfg, num_classes, scheme.num_logits, scheme.scores, query_generator=generator)
    base = base_path(cfg)
    report = None
    if base is None:
        anchors = anchors_from_gt(train.gt_boxes(), train.gt_labels(), model_cfg.num_anchor, seed=int(cfg.seed))
        model.set_anchors(anchors)
    else:  # the base's anchors come with its weights
        report = load_base(model, base, model_cfg, datamodule.classes)
        log.info("init: %s", report.summary())
    criterion = Sparse4DCriterion(
        scheme,
        **_plain(cfg.criterion),
        quality_assign=bool(paq.assignment),
        quality_lambda=paq.get("lambda", 0.4),
        quality_topk=paq.get("topk", 4),
        query_generator=generator,
    )
    collector = EvalCollector(
        classes=datamodule.classes,
        fp_thresholds=tuple(cfg.eval.fp_thresholds),
        track_min_score=cfg.eval.track_min_score,
        track_score=cfg.eval.track_score,
        num_queries=model_cfg.num_anchor,
    )
    module = Sparse4DModule(model, criterion, collector, OptimConfig(**_plain(cfg.optim)), max_loss=cfg.train.max_loss)
    module.init_report = report
    return datamodule, module
