"""The one precision policy of the training stages (train_heads and finetune)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def choose_precision(requested: str, *, cuda: bool, bf16_supported: bool = False) -> str:
    """Lightning precision for this machine.

    ``auto``: bf16-mixed on GPUs that support it, 16-mixed on older ones (Turing, e.g. a 2080 Ti),
    32-true on CPU. fp16 mixed precision asked for without CUDA falls back to 32-true (logged), so
    the baseline's default ``16-mixed`` still runs on a laptop. Anything else is passed through.
    """
    if requested == "auto":
        if not cuda:
            return "32-true"
        return "bf16-mixed" if bf16_supported else "16-mixed"
    if not cuda and requested in ("16-mixed", "16"):
        log.warning("precision %s needs CUDA; running 32-true on CPU", requested)
        return "32-true"
    return requested
