"""The classification scheme: the one thing that differs between the arms of a loss study.

A scheme declares the head's logit count, the classification part of the matching cost, the loss given per-query
labels, and the inference score per class. Labels follow one convention everywhere: ``0..C-1`` a class, ``C``
background (an unmatched query), negative values denoising negatives. Each scheme states in ``unmatched_gradient``
what gradient an unmatched query's logits receive; the tests prove it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from torch import Tensor

REGISTRY: dict[str, type[ClassificationScheme]] = {}


def register(name: str) -> Callable[[type[ClassificationScheme]], type[ClassificationScheme]]:
    """Class decorator: make a scheme selectable by ``name`` from config."""

    def add(cls: type[ClassificationScheme]) -> type[ClassificationScheme]:
        if name in REGISTRY:
            raise ValueError(f"classification scheme {name!r} registered twice")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return add


def build_scheme(name: str, num_classes: int, **options) -> ClassificationScheme:
    """The scheme registered as ``name``; an unknown name lists the valid ones."""
    if name not in REGISTRY:
        raise ValueError(f"unknown classification scheme {name!r}; valid: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](num_classes, **options)


class ClassificationScheme(ABC):
    """Base of every arm. ``loss`` returns a sum over rows divided by ``avg_factor`` (the number of positives)."""

    name: ClassVar[str]
    unmatched_gradient: ClassVar[str]  # one sentence: what an unmatched query's logits receive
    needs_iou: ClassVar[bool] = False  # the loss wants the IoU of each positive with its GT (varifocal)

    def __init__(self, num_classes: int, loss_weight: float = 2.0):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.loss_weight = loss_weight

    @property
    def num_logits(self) -> int:
        return self.num_classes

    @abstractmethod
    def match_cost(self, logits: Tensor, gt_labels: Tensor) -> Tensor:
        """Classification cost ``[Q, M]`` of giving each query each GT; lower is better."""

    @abstractmethod
    def loss(self, logits: Tensor, labels: Tensor, avg_factor: float, iou: Tensor | None = None) -> Tensor:
        """Loss for ``logits [N, K]`` and ``labels [N]``; ``iou [N]`` (positives' IoU, 0 elsewhere) if needs_iou."""

    @abstractmethod
    def scores(self, logits: Tensor) -> Tensor:
        """Per-class inference scores ``[..., C]`` in [0, 1]."""

    def foreground(self, labels: Tensor) -> Tensor:
        """Rows labelled with a real class."""
        return (labels >= 0) & (labels < self.num_classes)

    def one_hot(self, labels: Tensor) -> Tensor:
        """``[N, C]`` float one-hot; background and negative labels give all-zero rows (mmdet's convention)."""
        classes = labels.new_tensor(range(self.num_classes))
        return (labels.unsqueeze(-1) == classes).float()
