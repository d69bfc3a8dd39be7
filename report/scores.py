"""Model scores for the listed queries of an evaluation (their top results): recomputed from the
evaluation's own record (``config.json``: a heads checkpoint over a store split), or read from a
score matrix (predict's ``<name>.csv``). Only evaluate is used, never training code."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from audioret.evaluate import metrics as M

from .data import EvalAnalysis, QueryRow, finish_analysis, top_results

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


def from_record(config: dict[str, Any], ev: EvalAnalysis | None = None) -> TopFn | None:
    """Recompute scores as the evaluation did: its heads checkpoint over its store split (None when the
    record names no store, the files are gone, the checkpoint is a finetune one: raw audio is slow, or the
    recomputed scores do not give ``ev``'s recorded ranks: a checkpoint retrained since, another store)."""
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
    if ev is not None and not agrees(ev.single_rows, src.captions, src.audio_fnames, text, audio):
        log.warning("report: %s on %s (%s) no longer ranks as the evaluation %s did (the checkpoint or the store "
                    "changed since): its top results are left out", ckpt, store, split, ev.source)
        return None
    return _lookup(src.captions, src.audio_fnames, lambda r: text[r] @ audio.T)


def agrees(rows: Sequence[QueryRow], captions: Sequence[str], fnames: Sequence[str], text: torch.Tensor,
           audio: torch.Tensor, share: float = 0.95) -> bool:
    """Whether these embeddings give the evaluation's recorded ranks (single-match rows: each caption's own
    clip) for at least ``share`` of the captions (not all: a near-tie may flip between devices/precisions)."""
    row_of: dict[str, int] = {}
    for i, c in enumerate(captions):
        row_of[c] = -1 if c in row_of else i   # a repeated caption: its row is ambiguous, not checked
    col_of = {f: j for j, f in enumerate(fnames)}
    pairs = [(row_of[q.query], col_of[q.files[0]], q.ranks[0]) for q in rows
             if row_of.get(q.query, -1) >= 0 and q.files and q.files[0] in col_of]
    if not pairs:
        return True
    rs, cs, want = (torch.tensor(x) for x in zip(*pairs))
    scores = text[rs].float() @ audio.float().T                  # [P, A]
    target = scores.gather(1, cs[:, None])                       # [P, 1]
    ahead = (scores > target).sum(1) + ((scores == target) & (torch.arange(scores.shape[1]) < cs[:, None])).sum(1)
    return bool(((ahead + 1) == want).float().mean() >= share)


def evaluate_heads(checkpoint: Path, store: Path, split: str, *, score_k: int = 16) -> tuple[EvalAnalysis, TopFn]:
    """A heads checkpoint scored on a store split in process, as ``audioret evaluate --store`` does
    (ground truth: the split's own captions, plus the corpus's multi-match annotations when there are
    any; unmatched annotation rows skipped): the analysis and its top-results function."""
    from audioret.evaluate.annotations import choose_annotations, corpus_of_store
    from audioret.evaluate.model import embed_all, load_store_source
    from audioret.evaluate.report import evaluate_embeddings, load_ground_truth

    src = load_store_source(checkpoint, store, split)
    choice = choose_annotations([], corpus_of_store(store, split))
    gt = load_ground_truth(choice.paths)
    gt.single = None  # single-match targets: each caption's own clip
    text = embed_all(src.embed_text, len(src.captions), 256)    # [Q, D]
    audio = embed_all(src.embed_audio, len(src.audio_fnames), 256)  # [A, D]
    ev = evaluate_embeddings(text, audio, src.captions, src.audio_fnames, gt, caption_fnames=src.caption_fnames,
                             skip_unmatched=True)
    single = ev.ranks.target.tolist() if ev.ranks.target is not None else []
    out = EvalAnalysis(Path(checkpoint), dict(ev.metrics), single=single, num_audios=len(src.audio_fnames))
    out.single_rows = [QueryRow(c, [f], [r], 1.0 / r if r <= 10 else 0.0)
                       for c, f, r in zip(ev.single_captions, ev.single_fnames, single)]
    out.multi = [QueryRow(q, list(files), list(ranks), M.average_precision_at_k(ranks, score_k))
                 for q, files, ranks in zip(ev.multi_queries, ev.multi_files, ev.ranks.relevant)]
    return finish_analysis(out), _lookup(src.captions, src.audio_fnames, lambda r: text[r] @ audio.T)


def scores_for(config: dict[str, Any], predictions: Path | None,
               ev: EvalAnalysis | None = None) -> tuple[TopFn | None, str]:
    """(top-results function or None, where the scores come from)."""
    try:
        fn = from_record(config, ev)
        if isinstance(config.get("checkpoint"), list):
            config = {**config, "checkpoint": config["checkpoint"][0]}
        if fn is not None:
            return fn, f"recomputed: {config.get('checkpoint')} on {config.get('store')} ({config.get('split')})"
    except (ValueError, FileNotFoundError, OSError) as err:  # a moved or changed store: say so, go on
        log.warning("report: cannot recompute scores from %s: %s", config.get("checkpoint"), err)
    if predictions is not None:
        return from_score_matrix(predictions), f"score matrix {predictions}"
    return None, "no scores (give --predictions with the score matrix of the evaluated model)"


__all__ = ["TopFn", "from_score_matrix", "from_record", "scores_for", "evaluate_heads"]
