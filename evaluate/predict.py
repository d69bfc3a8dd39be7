"""``audioret predict``: submission files (score matrix + ranked top-K) for a folder of audio files
and a captions CSV (the baseline's ``d25_t6.predict`` inputs and flags), or for a store and/or
corpus split; of one checkpoint, or of an ensemble of several (the weighted mean of their score
matrices, :mod:`audioret.evaluate.ensemble`; each member embedded once and cached in
``<out>/embeddings/``, :mod:`audioret.evaluate.members`).

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
ENSEMBLE_NAME = "ensemble"  # default file stem for several checkpoints


def _check(cfg: PredictConfig) -> None:
    if not cfg.matrix and cfg.top_k <= 0:
        raise ValueError("predict: nothing to write (--no-matrix and --top-k 0)")
    folder = cfg.audio_dir is not None or cfg.captions is not None
    split = cfg.store is not None or cfg.data_path is not None
    if folder == split:
        raise ValueError("predict: give --audio-dir DIR with --captions CSV (the baseline's "
                         "--retrieval_audio_path / --retrieval_captions), or --store STORE and/or "
                         "--data-path DIR [--corpus NAME] [--split S]")
    if folder and (cfg.audio_dir is None or cfg.captions is None):
        raise ValueError("predict: --audio-dir and --captions go together (audio folder + CSV with a "
                         "'caption' column)")


def split_inputs(cfg: PredictConfig):
    """Where the members read from: a store and/or a corpus split, or a folder + captions CSV."""
    from audioret.evaluate.members import SplitInputs

    common = dict(beats_ckpt=cfg.beats_ckpt, text_model=cfg.text_model, batch_size=cfg.batch_size,
                  num_workers=cfg.num_workers, device=cfg.device)
    if cfg.audio_dir is not None:
        return SplitInputs(data_path=cfg.audio_dir, corpus="folder", split="predict", captions_csv=cfg.captions,
                           **common)
    return SplitInputs(store=cfg.store, data_path=cfg.data_path, corpus=cfg.corpus, split=cfg.split, **common)


def default_name(checkpoint: str | Path) -> str:
    """The run folder's name, as the baseline (``runs/heads/heads.pt`` -> ``heads``); for a
    Lightning checkpoint in ``<run>/checkpoints/`` the run plus the file stem
    (``runs/ft/checkpoints/last.ckpt`` -> ``ft_last``), so best and last do not overwrite each other."""
    path = Path(checkpoint).resolve()
    folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return folder.name if path.stem == "heads" else f"{folder.name}_{path.stem}"


def files_name(cfg: PredictConfig) -> str:
    """``--name``, else the one checkpoint's :func:`default_name`, else ``ensemble``."""
    if cfg.name:
        return cfg.name
    return default_name(cfg.checkpoint[0]) if len(cfg.checkpoint) == 1 else ENSEMBLE_NAME


def source_record(cfg: PredictConfig, files: list[Path], counts: dict[str, int],
                  weights: list[float] | None = None) -> dict:
    """What ``predict`` ranked, for ``evaluate --predictions`` (see :mod:`audioret.evaluate.annotations`).
    One checkpoint is recorded as ``checkpoint``; an ensemble as ``checkpoints`` + ``weights``."""
    from audioret.config import to_dict
    from audioret.evaluate.annotations import corpus_of_store

    ckpts = [str(Path(c).resolve()) for c in cfg.checkpoint]
    models: dict = ({"checkpoint": ckpts[0]} if len(ckpts) == 1 else {"checkpoints": ckpts, "weights": weights})
    info: dict = {**models, "files": [p.name for p in files], "counts": counts,
                  "config": to_dict(cfg)}  # what --config reads: audioret predict --config <name>_source.json
    if cfg.audio_dir is not None:
        return {**info, "audio_dir": str(Path(cfg.audio_dir).resolve()),
                "captions": str(Path(cfg.captions).resolve()), "split": None, "corpus": None}
    if cfg.store is not None:
        ref = corpus_of_store(cfg.store, cfg.split)
        corpus = {"name": ref.name, "data_path": str(ref.data_path) if ref.data_path else None}
        info["store"] = str(Path(cfg.store).resolve())
    else:
        corpus = {"name": cfg.corpus, "data_path": str(Path(cfg.data_path).resolve())}
    if cfg.data_path is not None:
        info["data_path"] = str(Path(cfg.data_path).resolve())
    return {**info, "split": cfg.split, "corpus": corpus}


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
    """Embed captions and audio with each checkpoint and write the files of their (weighted) mean
    score matrix (one checkpoint: its own); returns their paths."""
    from audioret.evaluate import members as MB
    from audioret.evaluate.annotations import write_record
    from audioret.evaluate.ensemble import normalized_weights
    from audioret.evaluate.submission import write_ranked_blocks, write_score_matrix_blocks

    _check(cfg)
    weights = normalized_weights(cfg.weights, len(cfg.checkpoint))
    embedded = MB.embed_ensemble(cfg.checkpoint, split_inputs(cfg), MB.cache_root(cfg.out, cfg.embedding_cache))
    captions, fnames = embedded[0].captions, embedded[0].audio_fnames
    block = MB.ensemble_block(embedded, weights, cfg.device)
    name = files_name(cfg)
    out = Path(cfg.out)
    written = []
    if cfg.matrix:
        written.append(write_score_matrix_blocks(out / f"{name}.csv", captions, fnames, block,
                                                 chunk_size=cfg.chunk_size))
    if cfg.top_k > 0:
        k = min(cfg.top_k, len(fnames))
        if k < cfg.top_k:
            log.warning("only %d audio files: the ranked list has %d columns, not %d", k, k, cfg.top_k)
        written.append(write_ranked_blocks(out / f"{name}_top{cfg.top_k}.csv", captions, fnames, block, k,
                                           chunk_size=cfg.chunk_size))
    failures = {k: v for e in embedded for k, v in e.failures.items()}
    skipped = write_skipped(out / f"{name}{SKIPPED_SUFFIX}", failures)
    written += [skipped] if skipped is not None else []
    rows = len(dict.fromkeys(captions))
    counts = {"rows": rows, "captions": len(captions), "audios": len(fnames), "skipped_audios": len(failures)}
    written.append(write_record(out, name, source_record(cfg, written, counts, weights)))
    for p in written:
        log.info("wrote %s", p)
    log.info("%s", rows_message(counts))
    if len(embedded) > 1:
        log.info("ensemble of %d checkpoints (weights %s)", len(embedded), ", ".join(f"{w:.3g}" for w in weights))
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
