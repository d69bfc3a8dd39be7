"""Score embeddings or a submission file against ground truth; write and print the report.

Ground truth is single-match (a Clotho captions CSV: ``file_name, caption_1..caption_5``) and/or
multi-match (the 2025 annotations: ``query, audio_filenames``). Matching is exact (baseline.md 8.5):
a caption is looked up as the first row with the identical string, file names compared verbatim.

Outputs in ``out_dir``: ``metrics.json`` (metrics, counts, skipped rows, notes), ``ranks_single.csv``
(caption, file, rank) and ``ranks_multi.csv`` (query, file, rank, AP@k per query) for error analysis.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from audioret.evaluate import metrics as M
from audioret.evaluate.io import Annotation, CaptionTable, csv_text, read_annotations, read_clotho_captions
from audioret.evaluate.submission import (RankedLists, ScoreMatrix, read_ranked, read_score_matrix,
                                          submission_kind)

log = logging.getLogger(__name__)


@dataclass
class GroundTruth:
    """Single- and/or multi-match truth; ``origin`` says where it came from and ``hint`` what to pass
    instead, so that a mismatch error names the flag that fixes it."""

    single: CaptionTable | None = None
    multi: list[Annotation] | None = None
    origin: str = "the given annotations"
    hint: str = "Check that the annotations belong to the corpus and split that were ranked."


def load_ground_truth(paths: Sequence[str | Path]) -> GroundTruth:
    """Read each file, telling the two formats apart by their header."""
    gt = GroundTruth()
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: annotations file not found")
        header = next(csv.reader(csv_text(p, "annotations")), [])
        if "query" in header and "audio_filenames" in header:
            gt.multi = read_annotations(p)
        elif "file_name" in header:
            gt.single = read_clotho_captions(p)
        else:
            raise ValueError(f"{p}: not a multi-match annotation CSV (query, audio_filenames) nor a "
                             f"Clotho captions CSV (file_name, caption_1..caption_5); header {header[:4]}")
    return gt


@dataclass
class Evaluation:
    """Everything the report needs: metrics plus what was ranked, per query."""

    metrics: dict[str, float]
    ranks: M.Ranks
    single_captions: list[str] = field(default_factory=list)
    single_fnames: list[str] = field(default_factory=list)
    multi_queries: list[str] = field(default_factory=list)
    multi_files: list[list[str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # human-readable unmatched rows
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def _first_index(items: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, c in enumerate(items):
        out.setdefault(c, i)
    return out


def _short(text: str, n: int = 160) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


def _fail_or_skip(bad: list[str], total: int, what: str, skip: bool, gt: GroundTruth) -> list[str]:
    """One-line error for unmatched ground-truth rows (which truth was used, what to pass), unless
    ``skip``; then the notes to show (a file none of whose rows match is left out whole)."""
    if not bad:
        return []
    if not skip:
        keep = total - len(bad)
        skip_hint = f" --skip-unmatched scores only the {keep} matching rows." if keep else ""
        raise ValueError(f"{len(bad)} of {total} {what} rows do not match the predictions (exact comparison; "
                         f"first: {_short(bad[0])}); ground truth: {gt.origin}. {gt.hint}{skip_hint}")
    if len(bad) == total:
        return [f"none of the {total} {what} rows match the predictions (first: {_short(bad[0])}); "
                "their metrics are left out"]
    return []


def _check_file_names(named: set[str], listed: set[str], gt: GroundTruth, where: str) -> None:
    """Audio names that share nothing with the ground truth are a naming mistake (a folder prefix,
    another extension), not a score of 0: one error for both submission formats."""
    if named and listed and not named & listed:
        raise ValueError(f"{where}none of the {len(named)} audio file names of the ground truth appears in the "
                         f"predictions (e.g. ground truth {min(named)!r}, predictions {min(listed)!r}); names must "
                         f"match exactly (file name with extension, no folder); ground truth: {gt.origin}. {gt.hint}")


def _single_pairs(table: CaptionTable, rows_of: dict[str, int], col_of: dict[str, int] | None,
                  skip: bool, gt: GroundTruth) -> tuple[list[int], list[int], list[int], list[str], list[str]]:
    """(kept caption indices, rows, cols, problems, notes). ``col_of`` None: any file name is accepted."""
    keep, rows, cols, bad = [], [], [], []
    for i, (c, f) in enumerate(zip(table.captions, table.fnames)):
        if c not in rows_of:
            bad.append(f"caption {c!r}: not a predictions row")
        elif col_of is not None and f not in col_of:
            bad.append(f"caption {c!r}: audio {f!r} is not a predictions column")
        else:
            keep.append(i)
            rows.append(rows_of[c])
            cols.append(col_of[f] if col_of is not None else -1)
    notes = _fail_or_skip(bad, len(table.captions), "caption", skip, gt)
    return keep, rows, cols, bad, notes


def _match_multi(gt: GroundTruth, captions: Sequence[str], fnames: Sequence[str], skip: bool,
                 ev: Evaluation) -> M.MultiMatch | None:
    """Multi-match rows resolved to (row, columns); unmatched rows fail or are skipped (``ev``)."""
    if gt.multi is None:
        return None
    mm = M.match_annotations([(a.query, a.files) for a in gt.multi], captions, fnames, skip_unmatched=True)
    bad = [f"annotation row {u.row} {u.query!r}: {u.reason}" for u in mm.unmatched]
    ev.notes += _fail_or_skip(bad, len(gt.multi), "annotation", skip, gt)
    ev.multi_queries = mm.queries
    ev.multi_files = [[fnames[j] for j in rel] for rel in mm.relevant]
    ev.skipped += bad
    return mm


def _named_files(gt: GroundTruth, rows_of: dict[str, int]) -> set[str]:
    """Audio names the ground truth gives for the captions the predictions have."""
    named = {f for a in gt.multi or [] if a.query in rows_of for f in a.files}
    if gt.single is not None:
        named |= {f for c, f in zip(gt.single.captions, gt.single.fnames) if c in rows_of}
    return named


def evaluate_score_matrix(sub: ScoreMatrix, gt: GroundTruth, *, ks: Sequence[int] = M.MULTI_KS,
                          skip_unmatched: bool = False, chunk_size: int | None = None,
                          where: str = "") -> Evaluation:
    """Exact ranks and metrics from a full score matrix (``where``: the file, for messages)."""
    rows_of, col_of = _first_index(sub.captions), _first_index(sub.fnames)
    _check_file_names(_named_files(gt, rows_of), set(sub.fnames), gt, where)
    ev = Evaluation(metrics={}, ranks=M.Ranks(target=None))
    targets = target_rows = None
    if gt.single is not None:
        keep, target_rows, targets, bad, notes = _single_pairs(gt.single, rows_of, col_of, skip_unmatched, gt)
        ev.single_captions = [gt.single.captions[i] for i in keep]
        ev.single_fnames = [gt.single.fnames[i] for i in keep]
        ev.skipped += bad
        ev.notes += notes
    mm = _match_multi(gt, sub.captions, sub.fnames, skip_unmatched, ev)
    if targets or (mm and mm.relevant):
        ev.ranks = M.score_matrix_ranks(sub.scores, targets or None, mm.relevant if mm else None,
                                        mm.query_index if mm else None, target_rows=target_rows or None,
                                        chunk_size=chunk_size)
    return _finish(ev, ks, gt, n_rows=len(sub.captions), n_audios=len(sub.fnames))


def evaluate_ranked(sub: RankedLists, gt: GroundTruth, *, ks: Sequence[int] = M.MULTI_KS,
                    skip_unmatched: bool = False, where: str = "") -> Evaluation:
    """Ranks from a top-K list: exact up to K, anything unlisted counts as rank > K.

    A list that names none of the ground truth's audio files is an error (a naming mistake would
    otherwise score 0 for every query), as it is for a score matrix."""
    rows_of = _first_index(sub.captions)
    pos = [{f: p for p, f in enumerate(r, start=1)} for r in sub.ranked]
    beyond = sub.k + 1
    ev = Evaluation(metrics={}, ranks=M.Ranks(target=None, max_rank=sub.k))
    _check_file_names(_named_files(gt, rows_of), {f for r in sub.ranked for f in r}, gt, where)
    if gt.single is not None:
        keep, rows, _, bad, notes = _single_pairs(gt.single, rows_of, None, skip_unmatched, gt)
        ev.single_captions = [gt.single.captions[i] for i in keep]
        ev.single_fnames = [gt.single.fnames[i] for i in keep]
        if keep:
            ev.ranks.target = torch.tensor([pos[r].get(f, beyond) for r, f in zip(rows, ev.single_fnames)],
                                           dtype=torch.long)
        ev.skipped += bad
        ev.notes += notes
    if gt.multi is not None:
        bad = []
        for n, a in enumerate(gt.multi):
            files = list(dict.fromkeys(a.files))
            if a.query not in rows_of or not files:
                bad.append(f"annotation row {n} {a.query!r}: "
                           + ("query is not a predictions row" if files else "no relevant audio listed"))
                continue
            r = rows_of[a.query]
            ev.multi_queries.append(a.query)
            ev.multi_files.append(files)
            ev.ranks.relevant.append([pos[r].get(f, beyond) for f in files])
            ev.ranks.query_index.append(r)
        ev.notes += _fail_or_skip(bad, len(gt.multi), "annotation", skip_unmatched, gt)
        ev.skipped += bad
    missing = M.uncomputable_keys(ev.ranks, multi_ks=ks)
    if missing:
        ev.notes.append(f"the ranked list has K={sub.k} columns: {', '.join(missing)} need a longer list "
                        "(R@10/mAP@10 need K >= 10, mAP@16_multi needs K >= 16) and are left out")
    return _finish(ev, ks, gt, n_rows=len(sub.captions), n_audios=None)


def _finish(ev: Evaluation, ks: Sequence[int], gt: GroundTruth, *, n_rows: int,
            n_audios: int | None) -> Evaluation:
    ev.metrics = M.metrics_from_ranks(ev.ranks, multi_ks=ks)
    ev.counts = {"prediction_rows": n_rows, "single_queries": len(ev.single_captions),
                 "multi_queries": len(ev.multi_queries), "skipped_rows": len(ev.skipped)}
    if n_audios is not None:
        ev.counts["audios"] = n_audios
    if not ev.metrics:
        raise ValueError(_nothing_scored(ev, gt))
    return ev


def _nothing_scored(ev: Evaluation, gt: GroundTruth) -> str:
    """Why no metric came out, and what to pass."""
    if ev.skipped and not ev.single_captions and not ev.multi_queries:
        return (f"--skip-unmatched left nothing to score: none of the {len(ev.skipped)} ground-truth rows "
                f"match the predictions (first: {_short(ev.skipped[0])}); ground truth: {gt.origin}. {gt.hint}")
    if ev.ranks.max_rank is not None and ev.notes:
        return (f"no metric can be computed: {ev.notes[-1]}; score the full score matrix <name>.csv instead, "
                "or a longer list (predict --top-k 16, on a split of at least 16 audio files)")
    return (f"no metric can be computed: ground truth: {gt.origin}; pass --annotations with a Clotho captions "
            "CSV and/or a multi-match annotation CSV that match the predictions")


def evaluate_predictions(path: str | Path, gt: GroundTruth, *, ks: Sequence[int] = M.MULTI_KS,
                         skip_unmatched: bool = False, chunk_size: int | None = None) -> Evaluation:
    """Score a submission file (score matrix or ranked list) without any model."""
    where = f"{path}: "
    if submission_kind(path) == "matrix":
        return evaluate_score_matrix(read_score_matrix(path), gt, ks=ks, skip_unmatched=skip_unmatched,
                                     chunk_size=chunk_size, where=where)
    return evaluate_ranked(read_ranked(path), gt, ks=ks, skip_unmatched=skip_unmatched, where=where)


def evaluate_embeddings(text_emb: torch.Tensor, audio_emb: torch.Tensor, captions: Sequence[str],
                        audio_fnames: Sequence[str], gt: GroundTruth, *,
                        caption_fnames: Sequence[str] | None = None, ks: Sequence[int] = M.MULTI_KS,
                        skip_unmatched: bool = False, chunk_size: int | None = None,
                        device: str | None = None) -> Evaluation:
    """Exact ranks and metrics from embeddings: text [Q, D] per caption, audio [A, D] per unique file.

    Single-match targets come from ``caption_fnames`` (each caption's own audio) if given, else from
    ``gt.single`` matched by caption string.
    """
    block, _, _ = M.embedding_blocks(text_emb, audio_emb, device)  # checks shapes and finiteness
    return evaluate_blocks(block, captions, audio_fnames, gt, caption_fnames=caption_fnames, ks=ks,
                           skip_unmatched=skip_unmatched, chunk_size=chunk_size, device=device)


def evaluate_blocks(block: M.BlockFn, captions: Sequence[str], audio_fnames: Sequence[str], gt: GroundTruth, *,
                    caption_fnames: Sequence[str] | None = None, ks: Sequence[int] = M.MULTI_KS,
                    skip_unmatched: bool = False, chunk_size: int | None = None,
                    device: str | None = None) -> Evaluation:
    """:func:`evaluate_embeddings` over score blocks ``block(r0, r1)`` [r1 - r0, A] (e.g. an ensemble's
    mean), rows ``captions``, columns ``audio_fnames``; blocks are trusted finite (built from checked
    embeddings)."""
    col_of = _first_index(audio_fnames)
    ev = Evaluation(metrics={}, ranks=M.Ranks(target=None))
    targets = rows = None
    if caption_fnames is not None:
        table = CaptionTable(list(captions), list(caption_fnames))
        rows_of = {c: i for i, c in enumerate(captions)}  # each caption scores on its own row
        keep, _, targets, bad, notes = _single_pairs(table, rows_of, col_of, skip_unmatched, gt)
        rows = keep
        ev.single_captions = [captions[i] for i in keep]
        ev.single_fnames = [caption_fnames[i] for i in keep]
        ev.skipped += bad
        ev.notes += notes
    elif gt.single is not None:
        keep, rows, targets, bad, notes = _single_pairs(gt.single, _first_index(captions), col_of,
                                                        skip_unmatched, gt)
        ev.single_captions = [gt.single.captions[i] for i in keep]
        ev.single_fnames = [gt.single.fnames[i] for i in keep]
        ev.skipped += bad
        ev.notes += notes
    mm = _match_multi(gt, captions, audio_fnames, skip_unmatched, ev)
    Q, A = len(captions), len(audio_fnames)
    if targets or (mm and mm.relevant):
        ev.ranks = M.ranks_from_blocks(block, Q, A, targets or None, mm.relevant if mm else None,
                                       mm.query_index if mm else None, target_rows=rows or None,
                                       chunk_size=chunk_size, device=device, check_finite=False)
    return _finish(ev, ks, gt, n_rows=Q, n_audios=A)


# --------------------------------------------------------------------------- output

def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_report(out_dir: str | Path, ev: Evaluation, *, ks: Sequence[int] = M.MULTI_KS,
                 extra: dict[str, Any] | None = None) -> Path:
    """metrics.json + ranks_single.csv + ranks_multi.csv in ``out_dir``; returns the JSON path.
    Each file is written to a temp name and renamed; a failed write (full disk) leaves no temp file."""
    out = Path(out_dir)
    try:
        return _write_report(out, ev, ks=ks, extra=extra)
    finally:
        for tmp in (out / ".ranks_single.csv.tmp", out / ".ranks_multi.csv.tmp"):
            tmp.unlink(missing_ok=True)


def _write_report(out: Path, ev: Evaluation, *, ks: Sequence[int], extra: dict[str, Any] | None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    if ev.ranks.target is not None:
        with (out / ".ranks_single.csv.tmp").open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["caption", "file_name", "rank"])
            w.writerows(zip(ev.single_captions, ev.single_fnames, ev.ranks.target.tolist()))
        os.replace(out / ".ranks_single.csv.tmp", out / "ranks_single.csv")
    if ev.ranks.relevant:
        with (out / ".ranks_multi.csv.tmp").open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["query", "file_name", "rank", *(f"AP@{k}" for k in ks)])
            for q, files, ranks in zip(ev.multi_queries, ev.multi_files, ev.ranks.relevant):
                aps = [round(M.average_precision_at_k(ranks, k), 6) for k in ks]
                for f_, r in zip(files, ranks):
                    w.writerow([q, f_, r, *aps])
        os.replace(out / ".ranks_multi.csv.tmp", out / "ranks_multi.csv")
    payload = {"metrics": M.ordered_metrics(ev.metrics), "counts": ev.counts, "rank_limit": ev.ranks.max_rank,
               "tie_rule": "descending score, equal scores ranked by ascending audio index",
               "notes": ev.notes, "skipped": ev.skipped, **(extra or {})}
    path = out / "metrics.json"
    _atomic_text(path, json.dumps(payload, indent=2) + "\n")
    return path


def metrics_table(ev: Evaluation, title: str = "retrieval metrics"):
    """A rich Table in report order (:func:`metrics.metric_sort_key`: mAP@16_multi, mAP@10_multi,
    mAP@10, R@1, R@5, R@10), in percent."""
    from rich.table import Table
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value (%)", justify="right")
    for k in sorted(ev.metrics, key=M.metric_sort_key):
        t.add_row(k, f"{100 * ev.metrics[k]:.2f}")
    t.caption = ", ".join(f"{k}={v}" for k, v in ev.counts.items())
    return t


def comparison_table(rows: Sequence[tuple[str, Evaluation]], title: str = "retrieval metrics"):
    """One row per model (an ensemble's members, then the ensemble), one column per metric in
    report order (mAP@16_multi, mAP@10_multi, mAP@10, R@1, R@5, R@10), in percent."""
    from rich.table import Table
    t = Table(title=f"{title} (%)")
    t.add_column("model", no_wrap=True)
    keys = sorted(dict.fromkeys(k for _, ev in rows for k in ev.metrics), key=M.metric_sort_key)
    for k in keys:
        t.add_column(k.replace("_", " "), justify="right", min_width=6)
    for name, ev in rows:
        t.add_row(name, *(f"{100 * ev.metrics[k]:.2f}" if k in ev.metrics else "-" for k in keys))
    t.caption = ", ".join(f"{k}={v}" for k, v in rows[-1][1].counts.items()) if rows else None
    return t


def print_comparison(rows: Sequence[tuple[str, Evaluation]], title: str = "retrieval metrics") -> None:
    """:func:`comparison_table` plus the notes of the last row (the ensemble)."""
    from rich.console import Console
    console = Console()
    console.print(comparison_table(rows, title))
    ev = rows[-1][1]
    for note in ev.notes:
        console.print(f"[yellow]note:[/] {note}")
    if ev.skipped:
        console.print(f"[yellow]skipped {len(ev.skipped)} unmatched rows[/] (listed in metrics.json)")


def print_report(ev: Evaluation, title: str = "retrieval metrics") -> None:
    from rich.console import Console
    console = Console()
    console.print(metrics_table(ev, title))
    for note in ev.notes:
        console.print(f"[yellow]note:[/] {note}")
    if ev.skipped:
        console.print(f"[yellow]skipped {len(ev.skipped)} unmatched rows[/] (listed in metrics.json)")


def score_and_report(text_emb: torch.Tensor, audio_emb: torch.Tensor, captions: Sequence[str],
                     audio_fnames: Sequence[str], annotations: GroundTruth | Sequence[str | Path] | None,
                     out_dir: str | Path | None, *, caption_fnames: Sequence[str] | None = None,
                     ks: Sequence[int] = M.MULTI_KS, skip_unmatched: bool = False,
                     chunk_size: int | None = None, device: str | None = None,
                     show: bool = True) -> dict[str, float]:
    """The model path in one call: embeddings -> exact metrics -> table (+ report files in out_dir).

    text_emb [Q, D] one row per raw caption ``captions``; audio_emb [A, D] one row per unique file
    ``audio_fnames``; ``caption_fnames[i]`` caption i's own audio (single-match targets);
    ``annotations`` a GroundTruth or files for :func:`load_ground_truth` (multi-match and/or captions).
    """
    gt = annotations if isinstance(annotations, GroundTruth) else load_ground_truth(annotations or [])
    ev = evaluate_embeddings(text_emb, audio_emb, captions, audio_fnames, gt, caption_fnames=caption_fnames,
                             ks=ks, skip_unmatched=skip_unmatched, chunk_size=chunk_size, device=device)
    if show:
        print_report(ev)
    if out_dir is not None:
        write_report(out_dir, ev, ks=ks)
    return ev.metrics


__all__ = ["GroundTruth", "Evaluation", "load_ground_truth", "evaluate_score_matrix",
           "evaluate_ranked", "evaluate_predictions", "evaluate_embeddings", "evaluate_blocks", "write_report",
           "metrics_table", "comparison_table", "print_report", "print_comparison", "score_and_report"]
