"""Lightning glue: train a Sparse4D model with a criterion, evaluate every epoch, guard against divergence."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch

from .eval.collector import EvalCollector
from .eval.keys import SCENE_PREFIX
from .model.pretrained import LoadReport
from .model.sparse4d import Sparse4D
from .supervision.criterion import Sparse4DCriterion


class DivergedError(RuntimeError):
    """The loss became non-finite or exploded: the run is stopped and marked failed rather than trained on."""


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a backbone learning-rate multiplier; linear warm-up then cosine decay, stepped per batch."""

    lr: float = 1e-3
    backbone_lr_mult: float = 0.5
    weight_decay: float = 1e-3
    warmup_steps: int = 50
    warmup_ratio: float = 0.333
    min_lr_ratio: float = 1e-3


def lr_factor(step: int, total: int, cfg: OptimConfig) -> float:
    """Multiplier of the base learning rate at ``step`` of ``total``."""
    if step < cfg.warmup_steps:
        return cfg.warmup_ratio + (1 - cfg.warmup_ratio) * step / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class Sparse4DModule(pl.LightningModule):
    """One arm's training: the model, the arm's criterion, and the collector that turns outputs into metrics."""

    def __init__(
        self,
        model: Sparse4D,
        criterion: Sparse4DCriterion,
        collector: EvalCollector,
        optim: OptimConfig = OptimConfig(),
        max_loss: float = 1e4,
    ):
        super().__init__()
        self.model, self.criterion, self.collector = model, criterion, collector
        self.optim, self.max_loss = optim, max_loss
        self.last_metrics: dict[str, dict[str, float]] = {}
        self.init_report: LoadReport | None = None  # set when the model was loaded from a pretrained base

    def forward(self, batch: dict[str, Any]):
        return self.model(batch)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        output = self.model(batch)
        result = self.criterion(output, batch["gt_boxes"], batch["gt_labels"], batch.get("gt_ids"))
        total = result.total
        if not torch.isfinite(total) or total.item() > self.max_loss:
            bad = sorted(k for k, v in result.terms.items() if not torch.isfinite(v))
            raise DivergedError(
                f"loss {total.item():.4g} at step {self.global_step} (epoch {self.current_epoch}); "
                f"non-finite terms: {bad or 'none'}. Lower optim.lr or keep trainer.gradient_clip_val"
            )
        size = len(batch["gt_boxes"])
        self.log("train/loss", total, prog_bar=True, batch_size=size)
        for name in ("cls", "box", "cns", "yns"):
            terms = [v for k, v in result.terms.items() if k.startswith(f"{name}_")]
            if terms:
                self.log(f"train/{name}", torch.stack(terms).sum(), batch_size=size)
        return total

    def _eval_step(self, batch: dict[str, Any]) -> None:
        output = self.model(batch)
        assignment = self.criterion.assign(output.final, batch["gt_boxes"], batch["gt_labels"], one_to_many=False)
        self.collector.update(batch, self.model.post_process(output), output, assignment)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def _gather_frames(self) -> None:
        """Under DDP every rank saw its own sequences: pool them, so the metrics are those of the whole split
        (mAP and tracking do not average over shards), identical on every rank, each frame counted once."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        parts: list[list[dict[str, Any]] | None] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, self.collector.frames)
        pooled = {}
        for frame in (frame for part in parts for frame in part or []):
            pooled.setdefault((frame["scene"], frame["t"]), frame)  # a rank without a sequence evaluated a copy
        self.collector.frames = [pooled[key] for key in sorted(pooled)]

    def _eval_epoch_end(self, stage: str) -> None:
        self._gather_frames()
        metrics = self.collector.compute(stage)  # frames stay until the next pass: artifacts are written from them
        self.last_metrics[stage] = metrics
        logged = {f"{stage}/{k}": float(v) for k, v in metrics.items()}
        if stage == "test":  # each test scene's own metrics: the test set's share of the uncertainty
            for scene, values in self.collector.scene_metrics().items():
                name = re.sub(r"[^\w\-. ]", "_", scene)  # what MLflow accepts in a key
                logged.update({f"{SCENE_PREFIX}{name}/{k}": float(v) for k, v in values.items()})
        # Identical on every rank after pooling: the DDP mean leaves them unchanged.
        self.log_dict(logged, sync_dist=True)

    def on_train_epoch_start(self) -> None:
        """Lightning sets the epoch of a DataLoader's sampler, never of its batch sampler: without this the temporal
        sampler would replay epoch 0's order and share of a pass in every epoch. The iterator reads the epoch at
        its first batch, after this hook."""
        batch_sampler = getattr(self.trainer.train_dataloader, "batch_sampler", None)
        if callable(getattr(batch_sampler, "set_epoch", None)):
            batch_sampler.set_epoch(self.current_epoch)

    def on_validation_epoch_start(self) -> None:
        self.collector.reset()

    def on_test_epoch_start(self) -> None:
        self.collector.reset()

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def optimizer(self) -> torch.optim.AdamW:
        """AdamW with the backbone at ``backbone_lr_mult`` x the learning rate."""
        backbone = {id(p) for p in self.model.backbone.parameters()}
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if id(p) in backbone], "lr": self.optim.lr * self.optim.backbone_lr_mult},
            {"params": [p for p in params if id(p) not in backbone], "lr": self.optim.lr},
        ]
        # fused: one kernel for the whole update (CPU and GPU). PyTorch's CPU default loops over the 336 tensors, and
        # its CPU foreach path does too: 29 ms a step here, 9 ms fused.
        return torch.optim.AdamW(groups, lr=self.optim.lr, weight_decay=self.optim.weight_decay, fused=True)

    def configure_optimizers(self):
        optimizer = self.optimizer()
        total = int(self.trainer.estimated_stepping_batches)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, self.optim))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
