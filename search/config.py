"""Typed configs of ``audioret index``, ``audioret search`` and ``audioret serve`` (flags generated
by audioret.config; the index folder and query texts of search/serve are positional)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from audioret.config import option

MAX_QUERY_CHARS = 500
MAX_TOP_K = 100


@dataclass
class IndexConfig:
    """Embed every clip once with a trained checkpoint (heads or finetune) and write a searchable
    index folder: from stored features (--store S --split X, heads checkpoints) or from audio files
    (--audio-dir DIR, searched recursively). Running it again with another --store/--audio-dir and
    the same --out appends (no rebuild); a rerun skips the clips already in."""

    STAGE = "index"  # recorded in saved configs (audioret.config.to_dict); not a field

    checkpoint: Path = option(help="heads checkpoint (train-heads) or finetune Lightning .ckpt",
                              flags=("--load_ckpt_path",))
    out: Path = option(help="index folder to create or append to")
    store: Path | None = option(None, "feature store whose split to index (heads checkpoints only)")
    split: str = option("eval", "store split to index")
    audio_dir: Path | None = option(None, "folder of audio files to index (subfolders included)")
    kind: Literal["auto", "flat", "ivfpq"] = option(
        "auto", "faiss index: flat (exact inner product), ivfpq (OPQ + IVF + PQ, trained on a sample), or "
        "auto: flat up to --flat-max clips, else ivfpq (fixed at the first build)")
    flat_max: int = option(200_000, "auto: largest collection kept in an exact flat index", unit="clips")
    nprobe: int | None = option(None, "ivfpq: inverted lists visited per query (default: the smallest power "
                                "of two reaching --target-recall on held-out queries)")
    target_recall: float = option(0.95, "ivfpq: recall@10 against exact search that --nprobe tuning aims at")
    rerank: int = option(100, "ivfpq: candidates per query re-scored exactly from the stored vectors "
                         "(0 = PQ scores only)", unit="clips")
    recall_queries: int = option(500, "held-out vectors used as queries to measure recall@10 vs exact",
                                 unit="queries")
    train_max: int = option(200_000, "ivfpq: most vectors in the training sample", unit="vectors")
    clips_per_part: int = option(4096, "clips embedded and saved per part (an interrupted run keeps the "
                                 "finished parts)", unit="clips")
    beats_ckpt: Path | None = option(None, "BEATs file to use when the path recorded in the checkpoint does "
                                     "not exist here (its sha256 is checked)", flags=("--beats_ckpt_path",))
    text_model: str | None = option(None, "text model name or folder overriding the recorded one")
    batch_size: int = option(16, "clips decoded/embedded per batch", unit="clips")
    num_workers: int = option(2, "audio: DataLoader processes decoding audio", unit="processes")
    device: str = option("cpu", "torch device (cpu, cuda)")
    seed: int = option(0, "seed of the training sample and the held-out recall queries")


@dataclass
class SearchConfig:
    """Rank an index's clips for text queries with the checkpoint the index was built with: a table of
    rank, score (cosine), file and duration, or JSON with --json."""

    STAGE = "search"  # recorded in saved configs (audioret.config.to_dict); not a field

    index: Path | None = option(None, "index folder written by audioret index", positional=True, metavar="INDEX")
    queries: list[str] = option(default_factory=list, help="query texts (quote each one)", positional=True,
                                metavar="QUERY")
    queries_file: Path | None = option(None, "text file with one query per line (blank lines skipped)",
                                       flags=("--queries",))
    top_k: int = option(10, "results per query", unit="clips")
    json: bool = option(False, "print JSON (one object with every query's results) instead of tables")
    checkpoint: Path | None = option(None, "the index's checkpoint when it moved (its sha256 must match the "
                                     "recorded one; default: the recorded path)")
    beats_ckpt: Path | None = option(None, "unused (kept so older command lines run): queries need only "
                                     "the checkpoint's text side, never the BEATs/PaSST file")
    text_model: str | None = option(None, "text model name or folder overriding the recorded one")
    max_query_chars: int = option(MAX_QUERY_CHARS, "longest query accepted", unit="characters")
    device: str = option("cpu", "torch device (cpu, cuda)")


@dataclass
class ServeConfig:
    """A local web page to search an index and listen to the results (FastAPI + uvicorn). It serves
    only the audio files the index lists, by clip number, and binds to localhost by default."""

    STAGE = "serve"  # recorded in saved configs (audioret.config.to_dict); not a field

    index: Path | None = option(None, "index folder written by audioret index", positional=True, metavar="INDEX")
    host: str = option("127.0.0.1", "address to bind (0.0.0.0 exposes the page and the indexed audio "
                       "to the network)")
    port: int = option(8000, "TCP port")
    max_top_k: int = option(MAX_TOP_K, "most results one request may ask for", unit="clips")
    max_query_chars: int = option(MAX_QUERY_CHARS, "longest query accepted", unit="characters")
    checkpoint: Path | None = option(None, "the index's checkpoint when it moved (sha256 checked)")
    beats_ckpt: Path | None = option(None, "unused (kept so older command lines run): queries need only "
                                     "the checkpoint's text side, never the BEATs/PaSST file")
    text_model: str | None = option(None, "text model name or folder overriding the recorded one")
    device: str = option("cpu", "torch device (cpu, cuda)")
