"""Pretrained bases: a model's weights with their provenance, loaded safely into a model that fits them.

A base is two files side by side: ``NAME.pt``, the model's state dict (tensors only, so it loads with
``weights_only=True``), and ``NAME.json``, its provenance: the model config, classes and logits it was trained for,
how it was trained, and the sha256 of ``NAME.pt``. Loading checks the hash, then that the model config fits the
weights, then loads every tensor except the classification branches when the target's classes (or the arm's
number of logits) differ from the base's: those keep their fresh initialisation, as does anything the base lacks.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..checksum import file_sha256
from ..errors import ConfigError
from .config import ModelConfig

# ModelConfig fields that shape the weights or give them their meaning (input normalisation, key-point layout).
# The rest (thresholds, decay, denoising, velocity rule, dropout, ...) are training and inference rules a
# fine-tune may change.
WEIGHT_FIELDS: tuple[str, ...] = (
    "depth",
    "base_channels",
    "neck_start_level",
    "num_levels",
    "image_mean",
    "image_std",
    "embed_dims",
    "num_anchor",
    "num_temp_instances",
    "learnable_instance_feature",
    "anchor_embed_dims",
    "num_decoder",
    "num_single_frame_decoder",
    "num_groups",
    "num_learnable_points",
    "fixed_point_scale",
    "ffn_ratio",
    "with_quality",
    "num_depth_layers",
)
CLASS_BRANCH = re.compile(r"^heads\.\d+\.cls_layers\.")
PRETRAIN_COMMAND = "python -m experiments.pretrain"


@dataclass(frozen=True)
class LoadReport:
    """What a fine-tune starts from: tensors loaded from the base, re-initialised, or new (absent from the base)."""

    path: str
    sha256: str
    loaded: tuple[str, ...]
    reinitialised: tuple[str, ...]
    new: tuple[str, ...]
    reason: str  # why the classification branches were re-initialised, or ""

    @property
    def fresh_parts(self) -> list[str]:
        """Top-level modules with tensors the base lacks (e.g. PaQ's ``query_generator``)."""
        return sorted({k.split(".")[0] for k in self.new})

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors from {self.path}"]
        if self.reinitialised:
            count = len(self.reinitialised)
            parts.append(f"re-initialised the classification branches ({count} tensors: {self.reason})")
        if self.new:
            parts.append(f"fresh, not in the base: {', '.join(self.fresh_parts)}")
        return "; ".join(parts)


def provenance_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def save_base(state: Mapping[str, Tensor], weights: str | Path, provenance: dict[str, Any]) -> dict[str, Any]:
    """Write a model's state dict to ``weights`` (.pt) and its provenance (.json, with the weights' sha256); each
    file appears whole or not at all."""
    weights = Path(weights)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    tmp = weights.with_name(weights.name + ".tmp")
    torch.save(state, tmp)
    record = {**provenance, "weights": weights.name, "sha256": file_sha256(tmp), "bytes": tmp.stat().st_size}
    os.replace(tmp, weights)
    json_tmp = provenance_path(weights).with_suffix(".json.tmp")
    json_tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(json_tmp, provenance_path(weights))
    return record


def read_provenance(weights: str | Path) -> dict[str, Any]:
    """The provenance of the base at ``weights``; a clear error if either file is missing or unreadable."""
    weights, record_path = Path(weights), provenance_path(weights)
    for path in (weights, record_path):
        if not path.is_file():
            raise ConfigError(
                f"init.path: {path} does not exist; a base is NAME.pt with NAME.json beside it, made by "
                f"{PRETRAIN_COMMAND} (or use init=scratch)"
            )
    try:
        record = json.loads(record_path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"init.path: {record_path} is not valid JSON ({err}); re-make the base with {PRETRAIN_COMMAND}"
        ) from err
    missing = {"model", "classes", "num_logits", "sha256"} - set(record)
    if missing:
        raise ConfigError(f"init.path: {record_path} lacks {sorted(missing)}; re-make the base with {PRETRAIN_COMMAND}")
    return record


def check_fits(record: dict[str, Any], config: ModelConfig, weights: str | Path = "the base") -> None:
    """Fail, naming every field, when ``config`` builds weights of another shape or meaning than the base's."""
    base = ModelConfig(**record["model"]).to_dict()
    mine = config.to_dict()
    differ = [name for name in WEIGHT_FIELDS if base[name] != mine[name]]
    if differ:
        listed = ", ".join(f"model.{n}: base {base[n]!r}, this job {mine[n]!r}" for n in differ)
        remake = " ".join(f"model.{n}={_override(mine[n])}" for n in differ)
        raise ConfigError(
            f"init.path: the model config does not fit the base {weights} ({listed}). Make a matching base with "
            f"`{PRETRAIN_COMMAND} {remake} pretrain.out=PATH` and pass init.path=PATH.pt, or use init=scratch"
        )


def _override(value: Any) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value).replace(" ", "")


def load_base(model: nn.Module, weights: str | Path, config: ModelConfig, classes: tuple[str, ...]) -> LoadReport:
    """Load the base at ``weights`` into ``model`` (built for ``config`` and ``classes``) and report what was loaded.

    The hash is checked before the file is unpickled, and the file is read with ``weights_only=True``."""
    weights = Path(weights)
    record = read_provenance(weights)
    check_fits(record, config, weights)
    digest = file_sha256(weights)
    if digest != record["sha256"]:
        raise ConfigError(
            f"init.path: {weights} has sha256 {digest}, its provenance {provenance_path(weights).name} says "
            f"{record['sha256']}: the file is damaged or not the base it describes; re-make it with {PRETRAIN_COMMAND}"
        )
    state = torch.load(weights, map_location="cpu", weights_only=True)
    own = model.state_dict()
    reasons = []
    if tuple(record["classes"]) != tuple(classes):
        reasons.append(f"classes {list(record['classes'])} -> {list(classes)}")
    if int(record["num_logits"]) != int(getattr(model, "num_logits", record["num_logits"])):
        reasons.append(f"logits {record['num_logits']} -> {model.num_logits}")
    skip = {k for k in own if reasons and CLASS_BRANCH.match(k)}
    bad = [k for k in own if k in state and k not in skip and state[k].shape != own[k].shape]
    if bad:
        raise ConfigError(
            f"init.path: {weights} holds tensors of other shapes than this model's ({bad[:3]}); re-make the base "
            f"with {PRETRAIN_COMMAND} for this model config"
        )
    loaded = tuple(k for k in own if k in state and k not in skip)
    model.load_state_dict({k: state[k] for k in loaded}, strict=False)
    if callable(getattr(model, "reset_memory", None)):
        model.reset_memory()  # the instance bank starts every fine-tune empty
    return LoadReport(
        path=str(weights),
        sha256=digest,
        loaded=loaded,
        reinitialised=tuple(sorted(skip)),
        new=tuple(k for k in own if k not in state),
        reason="; ".join(reasons),
    )
