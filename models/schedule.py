"""The baseline's per-step learning-rate schedule (baseline.md section 6) as a pure function.

Linear warmup from ``min_lr`` (not from 0) to ``max_lr`` over ``warmup_epochs``, cosine down to
``min_lr`` over ``rampdown_epochs``, then flat at ``min_lr``. Step s = epoch * S + batch_idx.
"""

from __future__ import annotations

import math


def lr_at(step: int, steps_per_epoch: int, *, max_lr: float, min_lr: float,
          warmup_epochs: float, rampdown_epochs: float) -> float:
    """Learning rate for global step ``step`` (0-based) with ``steps_per_epoch`` batches per epoch."""
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be > 0, got {steps_per_epoch}")
    w = warmup_epochs * steps_per_epoch
    t = (warmup_epochs + rampdown_epochs) * steps_per_epoch
    if step < w:
        return min_lr + (max_lr - min_lr) * step / w
    if step < t:
        return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (step - w) / (t - w)))
    return min_lr
