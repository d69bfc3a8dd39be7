"""Model scores for the listed queries of an evaluation (their top results): recomputed from the
evaluation's own record (``config.json``: a heads checkpoint over a store split), or read from a
score matrix (predict's ``<name>.csv``). Only evaluate is used, never training code."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .data import top_results

log = logging.getLogger(__name__)

TopFn = Callable[[str, int], list[tuple[str, float]] | None]  # (query text, n) -> [(file, score)] or None


def _lookup(captions: Sequence[str], fnames: Sequence[str], row_scores: Callable[[int], torch.Tensor]) -> TopFn:
    first: dict[str, int] = {}
    for i, c in enumerate(captions):
        first.setdefault(c, i)

    def top(query: str, n: int) -> list[tuple[str, float]] | None:
        row = first.get(query)
        return None if row is None else top_results(row_scores(row), fnames, n)

    return top


def from_score_matrix(path: Path) -> TopFn:
    """Top results from a score matrix file (rows: captions, columns: audio files)."""
    from audioret.evaluate.submission import read_score_matrix

    sub = read_score_matrix(path)
    return _lookup(sub.captions, sub.fnames, lambda r: sub.scores[r])


def from_record(config: dict[str, Any]) -> TopFn | None:
    """Recompute scores as the evaluation did: its heads checkpoint over its store split (None when the
    record names no store, the files are gone, or the checkpoint is a finetune one: raw audio is slow)."""
    from audioret.evaluate.model import embed_all, load_store_source
    from audioret.evaluate.sources import HEADS, checkpoint_kind

    ckpt, store, split = config.get("checkpoint"), config.get("store"), config.get("split") or "eval"
    if isinstance(ckpt, list):  # evaluate records a list (several = an ensemble: its scores are not one model's)
        ckpt = ckpt[0] if len(ckpt) == 1 else None
    if not isinstance(ckpt, str) or not isinstance(store, str) or not Path(ckpt).is_file() or not Path(store).exists():
        return None
    if checkpoint_kind(ckpt) != HEADS:
        return None
    src = load_store_source(ckpt, store, split)
    text = embed_all(src.embed_text, len(src.captions), 256)    # [Q, D]
    audio = embed_all(src.embed_audio, len(src.audio_fnames), 256)  # [A, D]
    return _lookup(src.captions, src.audio_fnames, lambda r: text[r] @ audio.T)


def scores_for(config: dict[str, Any], predictions: Path | None) -> tuple[TopFn | None, str]:
    """(top-results function or None, where the scores come from)."""
    try:
        fn = from_record(config)
        if isinstance(config.get("checkpoint"), list):
            config = {**config, "checkpoint": config["checkpoint"][0]}
        if fn is not None:
            return fn, f"recomputed: {config.get('checkpoint')} on {config.get('store')} ({config.get('split')})"
    except (ValueError, FileNotFoundError, OSError) as err:  # a moved or changed store: say so, go on
        log.warning("report: cannot recompute scores from %s: %s", config.get("checkpoint"), err)
    if predictions is not None:
        return from_score_matrix(predictions), f"score matrix {predictions}"
    return None, "no scores (give --predictions with the score matrix of the evaluated model)"


__all__ = ["TopFn", "from_score_matrix", "from_record", "scores_for"]
