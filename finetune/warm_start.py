"""Warm start of the projections from a ``train-heads`` checkpoint (``--init-heads``)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from audioret.models import load_heads

log = logging.getLogger(__name__)


def _linear_of(head: nn.Module, side: str, path: Path) -> nn.Linear:
    proj = getattr(head, "proj", None)
    if not isinstance(proj, nn.Linear) or getattr(head, "seq", None) is not None:
        raise ValueError(f"{path}: the {side} head is {type(proj).__name__} (projection "
                         f"{head.__class__.__name__}); finetune's projection is one nn.Linear. Train the "
                         "heads with `--projection linear` (and no --seq-layers) to warm-start from them")
    return proj


def copy_linear(dst: nn.Linear, src: nn.Linear, what: str, path: Path) -> None:
    if dst.weight.shape != src.weight.shape:
        raise ValueError(f"{path}: {what} weight {tuple(src.weight.shape)} does not fit finetune's "
                         f"{what} {tuple(dst.weight.shape)} (out x in); the heads were trained on other "
                         "encoders or another --embed-dim")
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        dst.bias.copy_(src.bias)


def warm_start_projections(model: nn.Module, path: str | Path) -> dict[str, str]:
    """Copy the heads' linear projections (and tau) into ``model`` (a DualEncoder). Returns notes."""
    path = Path(path)
    heads = load_heads(path)
    cfg = heads.config
    notes = {}
    if cfg.audio_pooling != "segment-mean" or cfg.text_pooling != "first":
        notes["pooling"] = (f"heads used audio_pooling={cfg.audio_pooling}, text_pooling={cfg.text_pooling}; "
                            "finetune pools as the seed (segment-mean, first): weights copied anyway")
        log.warning("%s: %s", path, notes["pooling"])
    copy_linear(model.audio_projection, _linear_of(heads.audio, "audio", path), "audio_projection", path)
    copy_linear(model.text_projection, _linear_of(heads.text, "text", path), "text_projection", path)
    with torch.no_grad():
        model.tau.copy_(heads.tau.detach().reshape(model.tau.shape))
    return notes
