"""Clip embeddings for the index, through evaluate's model loading (no embedding code of our own):
a store split via ``load_store_source`` (heads over stored features), or audio files via
``load_raw_model`` + ``RawSource`` (heads over recomputed features, or a finetune checkpoint)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audioret.search.folder import IndexFolderError, Row

log = logging.getLogger(__name__)

Chunk = tuple[np.ndarray, list[Row]]  # ([n, D] float32 unit vectors, rows)


def checkpoint_record(path: Path) -> dict[str, Any]:
    """Path, sha256 and kind of a checkpoint file (what the index is tied to)."""
    from audioret.encoders.beats import file_sha256
    from audioret.evaluate.sources import checkpoint_kind

    path = Path(path)
    if not path.is_file():
        raise IndexFolderError(f"{path}: checkpoint not found; pass --checkpoint with a train-heads or "
                               "finetune checkpoint file")
    return {"path": str(path.resolve()), "sha256": file_sha256(path), "kind": checkpoint_kind(path)}


def _compact(ident: dict[str, Any] | None) -> dict[str, Any]:
    """An encoder identity without its file locations (files may move; hashes identify them)."""
    from audioret.encoders.registry import identity_keys_not_compared

    ident = dict(ident or {})
    return {k: v for k, v in ident.items() if k not in identity_keys_not_compared(ident)}


def heads_identity(heads: torch.nn.Module) -> dict[str, Any]:
    meta = ((getattr(heads, "checkpoint_info", {}) or {}).get("store") or {}).get("metadata") or {}
    return {"audio": _compact(meta.get("audio_encoder")), "text": _compact(meta.get("text_encoder"))}


def model_identity(model: Any) -> dict[str, Any]:
    """Encoder identity of a model from ``load_raw_model`` or ``load_text_model`` (heads: the recorded
    store identity, the one the encoders were rebuilt from; finetune: the encoders the checkpoint built;
    a finetune text tower knows only its ``text`` side)."""
    if hasattr(model, "heads"):
        return heads_identity(model.heads)
    if not hasattr(model, "model"):  # FinetunedTextModel: no audio encoder was built
        return {"text": _compact(model.text_encoder.identity)}
    inner = model.model
    return {"audio": _compact(inner.audio_encoder.identity), "text": _compact(inner.text_encoder.identity)}


def batched(seq: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), max(1, n)):
        yield seq[i:i + max(1, n)]


# ---- a store split ------------------------------------------------------------------------------
def store_clip_paths(store: Path, split: str, metadata: dict[str, Any]) -> dict[str, Path]:
    """Clip id -> audio file, from the corpus the store was extracted from ({} when it is not here)."""
    from audioret.corpora import load_corpus

    corpus = metadata.get("corpus") or {}
    name, data = corpus.get("name"), corpus.get("data_path")
    if not name or not data:
        log.warning("%s records no corpus: results will name clips without playable files", store)
        return {}
    try:
        cs = load_corpus(name, Path(data), split)
    except Exception as err:  # noqa: BLE001 - the index still works without files; say why once
        log.warning("%s: the audio of its corpus (%s at %s) cannot be listed (%s): results will name clips "
                    "without playable files", store, name, data, str(err).splitlines()[0] if str(err) else err)
        return {}
    return {c.clip_id: Path(c.path) for c in cs.clips}


def _column(table: Any, name: str, n: int) -> np.ndarray:
    try:
        return np.asarray(table.column(name), dtype=np.float64)
    except Exception:  # noqa: BLE001 - older stores lack the column
        return np.full(n, np.nan)


def store_chunks(src: Any, store: Path, split: str, metadata: dict[str, Any], skip: set[str], source: int,
                 clips_per_part: int, batch_size: int) -> Iterator[Chunk]:
    """Embeddings of the split's clips not in ``skip``, ``clips_per_part`` at a time."""
    ids = list(src.audio_fnames)
    paths = store_clip_paths(store, split, metadata)
    dur = _column(src.audio_items, "source_duration", len(ids))
    kept = _column(src.audio_items, "duration", len(ids))
    dur = np.where(np.isfinite(dur), dur, kept)
    root = str(Path(store).resolve())

    def key(i: int) -> str:
        p = paths.get(ids[i])
        return str(p.resolve()) if p is not None else f"{root}::{split}::{ids[i]}"

    todo = [i for i in range(len(ids)) if key(i) not in skip]
    log.info("%s/%s: %d clips, %d already in the index", store, split, len(ids), len(ids) - len(todo))
    for chunk in batched(todo, clips_per_part):
        parts = []
        with torch.inference_mode():
            for rows in batched(chunk, batch_size * 16):
                parts.append(src.embed_audio(list(rows)).float().cpu().numpy())
        rows_out = [Row(ids[i], str(paths[ids[i]].resolve()) if ids[i] in paths else None,
                        float(dur[i]) if np.isfinite(dur[i]) else None, key(i), source) for i in chunk]
        yield np.concatenate(parts), rows_out


# ---- audio files --------------------------------------------------------------------------------
def list_audio(folder: Path) -> list[Path]:
    """Every audio file under ``folder`` (subfolders included), sorted by relative path."""
    from audioret.audio import AUDIO_EXTENSIONS

    folder = Path(folder)
    if not folder.is_dir():
        raise IndexFolderError(f"{folder}: audio folder not found; pass --audio-dir with a folder of "
                               f"audio files ({', '.join(AUDIO_EXTENSIONS)})")
    files = sorted((p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS),
                   key=lambda p: p.relative_to(folder).as_posix())
    if not files:
        raise IndexFolderError(f"{folder}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found in it or "
                               "its subfolders")
    return files


def audio_chunks(model: Any, folder: Path, skip: set[str], source: int, clips_per_part: int,
                 batch_size: int, num_workers: int, failures: dict[str, str]) -> Iterator[Chunk]:
    """Embeddings of the audio files under ``folder`` not in ``skip``; undecodable files go to
    ``failures`` (path -> reason) and are retried by a rerun."""
    from audioret.corpora.durations import probe_durations
    from audioret.evaluate.sources import RawItems, RawSource

    folder = Path(folder)
    files = list_audio(folder)
    todo = [p for p in files if str(p.resolve()) not in skip]
    log.info("%s: %d audio files, %d already in the index", folder, len(files), len(files) - len(todo))
    for chunk in batched(todo, clips_per_part):
        names = [p.relative_to(folder).as_posix() for p in chunk]
        src = RawSource(model, RawItems(names, list(chunk), [], None), batch_size=batch_size,
                        num_workers=num_workers)
        try:
            src.prepare()
        except ValueError:
            if len(src.failures) < len(chunk):
                raise
        failures.update({str(folder / n): r for n, r in src.failures.items()})
        if not src.audio_fnames:
            continue
        by_name = dict(zip(names, chunk))
        kept = [by_name[n] for n in src.audio_fnames]
        vectors = src.embed_audio(list(range(len(kept)))).float().cpu().numpy()
        secs = probe_durations(kept)
        rows = [Row(n, str(p.resolve()), d, str(p.resolve()), source)
                for n, p, d in zip(src.audio_fnames, kept, secs)]
        yield vectors, rows
