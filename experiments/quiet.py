"""What a job prints, trimmed to what a user reads: no accelerator banners or product tips from Lightning, and the
known deprecation warnings of the libraries (not of this project) silenced at the module that raises them."""

from __future__ import annotations

import logging
import warnings

# Lightning's rank-zero lines that say nothing about this job on a CPU study, matched at their start.
BANNERS = ("GPU available", "TPU available", "HPU available", "💡 Tip")
# (category, message regex, module regex) of warnings raised inside third-party code on every job.
KNOWN_WARNINGS = (
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\.pytorch\.utilities\._pytree"),
    (DeprecationWarning, r".*", r"lightning\..*"),
    (Warning, r"The ``noload`` loader strategy is deprecated", r"mlflow\.store\..*"),
)


class _DropBanners(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(BANNERS)


def quiet_third_parties() -> None:
    """Idempotent: call at the start of every process that trains (a study's workers too)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropBanners) for f in logger.filters):
            logger.addFilter(_DropBanners())
    for category, message, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
