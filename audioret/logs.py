"""One logging setup for every stage CLI: each line once, no advertising tips, no known-harmless warnings.

Why this exists: ``import lightning`` hangs its own console handler on the ``lightning`` logger (format
``INFO: ...``) while its records also propagate to the root handler of ``logging.basicConfig``, so every
Lightning line was printed twice; and Lightning prints a "💡 Tip" advertising its cloud products at every
Trainer it builds. :func:`setup_logging` installs one root handler that drops those tips, and
:func:`tame_lightning` (called by it, and by the trainers right after they import Lightning) hands
Lightning's records to that root handler alone.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%H:%M:%S"
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning")

# Messages of libraries that say nothing to an audioret user (matched at the start of the message).
SILENCED_PREFIXES = ("💡 Tip", "TPU available", "HPU available",
                     "Loading `train_dataloader` to estimate number of stepping batches")

# Python warnings Lightning raises for choices audioret makes on purpose (regexes on the message).
HARMLESS_WARNINGS = (
    r"Found \d+ module\(s\) in eval mode",  # the frozen audio encoder stays in eval mode by design
    r"You have overridden `transfer_batch_to_device`",  # the module moves its own batch types
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # inside Lightning itself (torch 2.14)
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    r"Experiment logs directory .* exists and is not empty",  # resume appends to metrics.csv
    r"Checkpoint directory .* exists and is not empty",
)


class DropMessages(logging.Filter):
    """Drop records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...] = SILENCED_PREFIXES) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.prefixes)


def tame_lightning() -> None:
    """Lightning's records go to the root handler only (once), if Lightning is imported yet; its
    warnings about audioret's deliberate choices are ignored.

    Safe to call many times; a no-op before ``import lightning`` (which then sees the root handler and
    adds none of its own for ``lightning.pytorch``/``lightning.fabric``; the top ``lightning`` package
    adds one unconditionally, hence the trainers call this again after importing it).
    """
    if not any(name in sys.modules for name in LIGHTNING_LOGGERS):
        return
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    for handler in logging.getLogger().handlers:  # the filter also guards handlers set up by others
        if not any(isinstance(f, DropMessages) for f in handler.filters):
            handler.addFilter(DropMessages())
    quiet_known_warnings()


def quiet_known_warnings() -> None:
    """Ignore the Lightning warnings about things audioret does on purpose (each named above)."""
    for pattern in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def setup_logging(level: int | str = logging.INFO, *, fmt: str = FORMAT) -> logging.Handler:
    """Root logging for a stage CLI: one stderr handler (replacing one an earlier call installed;
    others, such as pytest's, are kept), tips dropped, Lightning tamed, harmless warnings ignored.
    Off a terminal (SLURM logs, pipes) Hugging Face's download/loading bars are turned off too:
    there they are hundreds of carriage-return fragments."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_audioret", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt, DATE_FORMAT))
    handler.addFilter(DropMessages())
    handler._audioret = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    if not _is_terminal(sys.stderr):
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    tame_lightning()
    quiet_known_warnings()  # also when Lightning is not imported yet
    return handler


def format_duration(seconds: float) -> str:
    """``4.2s``, ``1m 42s``, ``2h 03m``: wall times people read at a glance."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"


def _is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


__all__ = ["setup_logging", "format_duration", "tame_lightning", "quiet_known_warnings", "DropMessages"]
