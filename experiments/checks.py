"""Config checks that need no data: unknown keys and impossible numbers fail before any MLflow run opens.

Hydra accepts ``+optim.lrr=1e-3`` (its own hint for a misspelt key) and ``+foo=1``; either would change the job's
identity and then fail inside training, or not at all. Every section a job reads is checked against what reads it
(the optimiser's, the trainer's and the criterion's parameters), naming the full key, its closest valid spelling
and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
from collections.abc import Iterable
from pathlib import Path

import lightning.pytorch as pl
from omegaconf import DictConfig

from sparse4d_lab.errors import ConfigError
from sparse4d_lab.eval.keys import metric_names
from sparse4d_lab.lit import OptimConfig
from sparse4d_lab.supervision.criterion import Sparse4DCriterion

TOP_LEVEL = (
    "data", "model", "loss", "trainer", "logger", "seed", "threads", "ab", "baseline", "primary", "figures",
    "criterion", "train", "eval", "paths", "semantics", "optim", "init", "pretrain", "hydra",
)  # fmt: skip
# What each section may hold: the parameters of the code that reads it.
SECTIONS: dict[str, tuple[str, ...]] = {
    "optim": tuple(f.name for f in dataclasses.fields(OptimConfig)),
    "trainer": tuple(set(inspect.signature(pl.Trainer.__init__).parameters) - {"self", "logger", "callbacks"}),
    "criterion": tuple(set(inspect.signature(Sparse4DCriterion.__init__).parameters) - {"self", "scheme"}),
    "train": ("batch_size", "eval_batch_size", "clip_len", "num_workers", "max_loss", "ema_decay"),
    "eval": ("fp_thresholds", "track_score", "track_min_score"),
    "init": ("mode", "path"),
}


def _unknown(section: str, keys: Iterable[str], known: Iterable[str]) -> None:
    known = sorted(known)
    unknown = sorted(set(keys) - set(known))
    if not unknown:
        return
    where = f"{section}." if section else ""
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1)
        hints.append(f"{where}{key}" + (f" (did you mean {where}{close[0]}?)" if close else ""))
    raise ConfigError(
        f"unknown config key(s) {', '.join(hints)}; valid {'under ' + section if section else 'top-level keys'}: "
        f"{', '.join(known)}. Drop the '+' override or fix its spelling"
    )


def _number(cfg: DictConfig, key: str, kind: type, low: float, high: float = float("inf"), what: str = "") -> None:
    section, name = key.split(".") if "." in key else ("", key)
    value = (cfg.get(section) or {}).get(name) if section else cfg.get(name)
    if value is None:
        return
    try:
        number = kind(value)
        ok = number == float(value) and low <= number <= high
    except (TypeError, ValueError):
        ok = False
    if not ok:
        kind_name = "a whole number" if kind is int else "a number"
        bounds = f">= {low}" if high == float("inf") else f"in [{low}, {high}]"
        raise ConfigError(f"{key}: must be {kind_name} {bounds}{what}; got {value!r}")


def check_keys_and_numbers(cfg: DictConfig) -> None:
    """Unknown keys and impossible numbers, named with their full key."""
    _unknown("", cfg.keys(), TOP_LEVEL)
    for section, known in SECTIONS.items():
        if cfg.get(section) is not None:
            _unknown(section, cfg[section].keys(), known)
    _number(cfg, "seed", int, 0)
    _number(cfg, "trainer.max_epochs", int, 1, what=" (the cosine schedule needs a finite length)")
    _number(cfg, "trainer.gradient_clip_val", float, 0)
    _number(cfg, "train.batch_size", int, 1)
    _number(cfg, "train.eval_batch_size", int, 1)
    _number(cfg, "train.num_workers", int, 0)
    _number(cfg, "train.max_loss", float, 0)
    _number(cfg, "train.ema_decay", float, 0, 1, what=" (null: no average; 0.999 averages ~1000 steps)")
    _number(cfg, "optim.lr", float, 1e-12)
    _number(cfg, "optim.backbone_lr_mult", float, 0)
    _number(cfg, "optim.weight_decay", float, 0)
    _number(cfg, "optim.warmup_steps", int, 0)
    _number(cfg, "optim.warmup_ratio", float, 0, 1)
    _number(cfg, "optim.min_lr_ratio", float, 0, 1)
    _primary(cfg)


def _primary(cfg: DictConfig) -> None:
    """A study's primary outcomes must be test metrics that every job logs."""
    primary = cfg.get("primary") or []
    thresholds = (cfg.get("eval") or {}).get("fp_thresholds") or ()
    known = [f"test/{name}" for name in metric_names(thresholds)]
    for key in [primary] if isinstance(primary, str) else primary:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"primary: {key!r} is no metric a job logs{hint}; valid: {', '.join(known)}")


def require_writable(path: Path, key: str) -> None:
    """Create ``path`` and prove it takes a file, before hours of training end in a failed write."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"{key}: {path} is not a writable folder ({err.strerror}); point {key} elsewhere") from None
