"""``audioret predict``: submission files (score matrix + ranked top-K) for a folder of audio files
and a captions CSV (the baseline's ``d25_t6.predict`` inputs and flags), or for a store split.

Outputs in ``--out`` (each written atomically): ``<name>.csv`` the full caption x audio score
matrix (``index,<audio file>...``), ``<name>_top<K>.csv`` the ranked list with ``--top-k K``,
``<name>_skipped.csv`` (``file_name,reason``) when audio files could not be decoded (those are
left out of both files and logged), and ``<name>_source.json``, what the files were predicted from
(checkpoint, store or audio folder, split, corpus): ``evaluate --predictions`` reads it to score
them against that corpus's own multi-match annotations.

Both files hold one row per distinct caption (a repeated caption is written once, like the
baseline), so a split with repeated captions gives fewer rows than captions; the log says so.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from audioret.evaluate.config import PredictConfig

log = logging.getLogger(__name__)

SKIPPED_SUFFIX = "_skipped.csv"
STORE_BATCH = 256  # store items are cheap to embed: larger batches than for raw audio


def _check(cfg: PredictConfig) -> None:
    if not cfg.matrix and cfg.top_k <= 0:
        raise ValueError("predict: nothing to write (--no-matrix and --top-k 0)")
    raw = cfg.audio_dir is not None or cfg.captions is not None
    if raw == (cfg.store is not None):
        raise ValueError("predict: give --audio-dir DIR with --captions CSV (the baseline's "
                         "--retrieval_audio_path / --retrieval_captions), or --store STORE [--split S]")
    if raw and (cfg.audio_dir is None or cfg.captions is None):
        raise ValueError("predict: --audio-dir and --captions go together (audio folder + CSV with a "
                         "'caption' column)")


def open_source(cfg: PredictConfig):
    """(EvalSource, batch size, skipped files {name: reason})."""
    from audioret.evaluate.sources import (HEADS, RawSource, checkpoint_kind, items_from_folder,
                                           load_raw_model)

    if cfg.store is not None:
        from audioret.evaluate.model import load_store_source

        if checkpoint_kind(cfg.checkpoint) != HEADS:
            raise ValueError(f"{cfg.checkpoint}: a finetune checkpoint embeds raw audio; use --audio-dir "
                             "and --captions instead of --store")
        src = load_store_source(cfg.checkpoint, cfg.store, cfg.split, device=cfg.device)
        return src, max(cfg.batch_size, STORE_BATCH), {}
    items = items_from_folder(cfg.audio_dir, cfg.captions)
    if not items.captions:
        raise ValueError(f"{cfg.captions}: no captions in the 'caption' column")
    model = load_raw_model(cfg.checkpoint, beats_ckpt=cfg.beats_ckpt, text_model=cfg.text_model,
                           device=cfg.device)
    src = RawSource(model, items, batch_size=cfg.batch_size, num_workers=cfg.num_workers).prepare()
    return src, cfg.batch_size, src.failures


def default_name(checkpoint: str | Path) -> str:
    """The run folder's name, as the baseline (``runs/heads/heads.pt`` -> ``heads``); for a
    Lightning checkpoint in ``<run>/checkpoints/`` the run plus the file stem
    (``runs/ft/checkpoints/last.ckpt`` -> ``ft_last``), so best and last do not overwrite each other."""
    path = Path(checkpoint).resolve()
    folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return folder.name if path.stem == "heads" else f"{folder.name}_{path.stem}"


def source_record(cfg: PredictConfig, files: list[Path], counts: dict[str, int]) -> dict:
    """What ``predict`` ranked, for ``evaluate --predictions`` (see :mod:`audioret.evaluate.annotations`)."""
    from audioret.evaluate.annotations import corpus_of_store

    info: dict = {"checkpoint": str(Path(cfg.checkpoint).resolve()), "files": [p.name for p in files],
                  "counts": counts}
    if cfg.store is not None:
        ref = corpus_of_store(cfg.store, cfg.split)
        corpus = {"name": ref.name, "data_path": str(ref.data_path) if ref.data_path else None}
        return {**info, "store": str(Path(cfg.store).resolve()), "split": cfg.split, "corpus": corpus}
    return {**info, "audio_dir": str(Path(cfg.audio_dir).resolve()), "captions": str(Path(cfg.captions).resolve()),
            "split": None, "corpus": None}


def write_skipped(path: Path, failures: dict[str, str]) -> Path | None:
    """``file_name,reason`` of the left-out audio files; a stale list from an earlier run is removed."""
    from audioret.evaluate.submission import atomic_writer

    if not failures:
        if path.exists():
            log.info("removing %s from an earlier run (no file was skipped now)", path)
            path.unlink()
        return None
    with atomic_writer(path) as w:
        w.writerow(["file_name", "reason"])
        w.writerows(sorted(failures.items()))
    log.warning("%d audio file(s) could not be decoded and are left out; listed in %s", len(failures), path)
    return path


def run(cfg: PredictConfig) -> list[Path]:
    """Embed captions and audio with the checkpoint and write the files; returns their paths."""
    from audioret.evaluate import metrics as M
    from audioret.evaluate.annotations import write_record
    from audioret.evaluate.model import embed_all
    from audioret.evaluate.submission import write_ranked_blocks, write_score_matrix_blocks

    _check(cfg)
    src, batch, failures = open_source(cfg)
    text = embed_all(src.embed_text, len(src.captions), batch)
    audio = embed_all(src.embed_audio, len(src.audio_fnames), batch)
    block, _, _ = M.embedding_blocks(text, audio, cfg.device)
    name = cfg.name or default_name(cfg.checkpoint)
    out = Path(cfg.out)
    written = []
    if cfg.matrix:
        written.append(write_score_matrix_blocks(out / f"{name}.csv", src.captions, src.audio_fnames,
                                                 block, chunk_size=cfg.chunk_size))
    if cfg.top_k > 0:
        k = min(cfg.top_k, len(src.audio_fnames))
        if k < cfg.top_k:
            log.warning("only %d audio files: the ranked list has %d columns, not %d", k, k, cfg.top_k)
        written.append(write_ranked_blocks(out / f"{name}_top{cfg.top_k}.csv", src.captions,
                                           src.audio_fnames, block, k, chunk_size=cfg.chunk_size))
    skipped = write_skipped(out / f"{name}{SKIPPED_SUFFIX}", failures)
    written += [skipped] if skipped is not None else []
    rows = len(dict.fromkeys(src.captions))
    counts = {"rows": rows, "captions": len(src.captions), "audios": len(src.audio_fnames),
              "skipped_audios": len(failures)}
    written.append(write_record(out, name, source_record(cfg, written, counts)))
    for p in written:
        log.info("wrote %s", p)
    log.info("%s", rows_message(counts))
    return written


def rows_message(counts: dict[str, int]) -> str:
    """The rows actually written, and why they can be fewer than the captions."""
    rows, captions = counts["rows"], counts["captions"]
    repeated = (f" ({captions} captions: {captions - rows} repeat an earlier caption and share its row)"
                if rows != captions else "")
    skipped = counts["skipped_audios"]
    return (f"{rows} caption rows x {counts['audios']} audio files{repeated}; "
            f"{skipped} audio file{'' if skipped == 1 else 's'} skipped")


def main(argv: list[str] | None = None) -> int:
    from audioret.evaluate.cli import guarded_main

    return guarded_main(PredictConfig, run, argv, "audioret predict")


if __name__ == "__main__":
    sys.exit(main())
