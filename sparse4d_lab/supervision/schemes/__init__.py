"""Classification schemes, one small file each, registered by name (``build_scheme(name, num_classes)``)."""

from . import detr_ce, focal_filtered, focal_onehot, focal_tao_patch, vfl, vfl_clamped  # noqa: F401  (registration)
from .base import REGISTRY, ClassificationScheme, build_scheme, register

__all__ = ["REGISTRY", "ClassificationScheme", "build_scheme", "register"]
