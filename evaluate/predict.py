"""``audioret predict``: submission files (score matrix + ranked top-K) for a store split."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from audioret.evaluate.config import PredictConfig

log = logging.getLogger(__name__)


def run(cfg: PredictConfig) -> list[Path]:
    """Embed the split with the checkpoint's heads and write the files; returns their paths."""
    from audioret.evaluate import metrics as M
    from audioret.evaluate.model import embed_all, load_store_source
    from audioret.evaluate.submission import write_ranked_blocks, write_score_matrix_blocks

    if not cfg.matrix and cfg.top_k <= 0:
        raise ValueError("predict: nothing to write (--no-matrix and --top-k 0)")
    src = load_store_source(cfg.checkpoint, cfg.store, cfg.split, device=cfg.device)
    text = embed_all(src.embed_text, len(src.captions), cfg.batch_size)
    audio = embed_all(src.embed_audio, len(src.audio_fnames), cfg.batch_size)
    block, _, _ = M.embedding_blocks(text, audio, cfg.device)
    name = cfg.name or Path(cfg.checkpoint).resolve().parent.name
    written = []
    if cfg.matrix:
        written.append(write_score_matrix_blocks(cfg.out / f"{name}.csv", src.captions, src.audio_fnames,
                                                 block, chunk_size=cfg.chunk_size))
    if cfg.top_k > 0:
        written.append(write_ranked_blocks(cfg.out / f"{name}_top{cfg.top_k}.csv", src.captions,
                                           src.audio_fnames, block, cfg.top_k, chunk_size=cfg.chunk_size))
    for p in written:
        log.info("wrote %s", p)
    return written


def main(argv: list[str] | None = None) -> int:
    from audioret.evaluate.cli import guarded_main

    return guarded_main(PredictConfig, run, argv, "audioret predict")


if __name__ == "__main__":
    sys.exit(main())
