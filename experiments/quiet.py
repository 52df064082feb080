"""What a job prints, trimmed to what a user reads: its progress bar labelled with its arm and seed, no accelerator
banners or product tips from Lightning, and the known deprecation warnings of the libraries (not of this project)
silenced at the module that raises them."""

from __future__ import annotations

import logging
import os
import warnings

from lightning.pytorch.callbacks import RichProgressBar

from .progress import LIVE_ENV

# Lightning's rank-zero lines that say nothing about this job on a CPU study, matched at their start.
BANNERS = ("GPU available", "TPU available", "HPU available", "💡 Tip", "Loading `train_dataloader` to estimate")
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
    """Idempotent: call at the start of every process that trains (a study's workers too); under a study's live
    display, the job keeps off the console."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropBanners) for f in logger.filters):
            logger.addFilter(_DropBanners())
    for category, message, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    if logging.getLogger().handlers:
        print_lightning_lines_once()
    if os.environ.get(LIVE_ENV):
        off_the_console()


def off_the_console() -> None:
    """A job of a study whose terminal shows the live display: its lines (and warnings) to its log file only.
    Console handlers go (the root's and a library's own, whose lines then reach the file through the root)."""
    logging.captureWarnings(True)
    root = logging.getLogger()
    loggers = [root, *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger))]
    for logger in loggers:
        consoles = [h for h in logger.handlers if type(h) is logging.StreamHandler]
        for handler in consoles:
            logger.removeHandler(handler)
        if consoles and logger is not root:
            logger.propagate = True


def print_lightning_lines_once() -> None:
    """Lightning gives its loggers console handlers of their own, and lets them propagate too when the root
    logger had handlers at its import: imported inside a Hydra job, each line would print twice. Its lines go
    where the job's own go (Hydra's console and the job's ``run.log``), once."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
            logger.removeHandler(handler)
        logger.propagate = True


class JobProgressBar(RichProgressBar):
    """Lightning's bar with the job's arm and seed in front: jobs side by side share one terminal."""

    def __init__(self, label: str):
        super().__init__()
        self.label = label

    def _get_train_description(self, current_epoch: int) -> str:
        return f"{self.label} {super()._get_train_description(current_epoch)}"

    @property
    def validation_description(self) -> str:
        return f"{self.label} Validation"

    @property
    def test_description(self) -> str:
        return f"{self.label} Test"
