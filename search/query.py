"""``audioret search INDEX "a dog barks"``: the checkpoint's text encoder embeds the query and the
index ranks its clips (a table of rank, score, file, duration; ``--json`` for scripts)."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audioret.config import build_parser, config_from_namespace
from audioret.errors import InputError
from audioret.search import ann
from audioret.search import folder as F
from audioret.search.config import MAX_QUERY_CHARS, SearchConfig

log = logging.getLogger(__name__)
PROG = "audioret search"


class QueryError(InputError):
    """A query that cannot be searched (empty, too long) or a top-k out of range."""


@dataclass
class Hit:
    rank: int
    score: float     # cosine similarity of the query and the clip
    clip: int        # row number in the index (the page fetches /audio/<clip>)
    id: str
    path: str | None
    duration: float | None  # seconds of the file


def check_query(text: str, max_chars: int = MAX_QUERY_CHARS) -> str:
    q = " ".join(str(text).split())
    if not q:
        raise QueryError("the query is empty: type what you want to hear, e.g. \"a dog barks in the distance\"")
    if len(q) > max_chars:
        raise QueryError(f"the query has {len(q)} characters, more than the {max_chars} allowed; shorten it")
    return q


def load_query_model(folder: Path, manifest: dict[str, Any], *, checkpoint: Path | None = None,
                     text_model: str | None = None, device: str = "cpu"):
    """The index's checkpoint (sha256 and encoders checked against the index) as a text embedder.

    Only its text side is loaded: the index holds the audio embeddings, so the audio encoder (and its
    BEATs/PaSST file) is not needed here. A finetune text tower has no audio identity to compare; the
    checkpoint's sha256 (checked first) already pins the weights the index's vectors came from."""
    from audioret.evaluate.sources import load_text_model
    from audioret.search.index import check_same_model
    from audioret.search.sources import checkpoint_record, model_identity

    path = Path(checkpoint) if checkpoint is not None else Path(manifest["checkpoint"]["path"])
    if not path.is_file():
        raise F.IndexFolderError(f"{folder}: its checkpoint {path} does not exist here; pass --checkpoint with "
                                 f"the same file (sha256 {manifest['checkpoint']['sha256'][:12]})")
    rec = checkpoint_record(path)
    if rec["sha256"] != manifest["checkpoint"]["sha256"]:
        check_same_model(folder, manifest, rec, manifest["encoders"])
    model = load_text_model(path, text_model=text_model, device=device)
    check_same_model(folder, manifest, rec, {**manifest["encoders"], **model_identity(model)})
    return model


class Searcher:
    """An opened index (memory-mapped) + the model that embeds queries; thread-safe ``search``.
    ``beats_ckpt`` is accepted for old callers and unused: queries need no audio encoder."""

    def __init__(self, folder: str | Path, *, model: Any = None, checkpoint: Path | None = None,
                 beats_ckpt: Path | None = None, text_model: str | None = None, device: str = "cpu",
                 max_query_chars: int = MAX_QUERY_CHARS) -> None:
        from audioret.search.deps import faiss

        faiss("audioret search")
        self.folder = Path(folder)
        self.manifest = F.open_manifest(self.folder)
        self.rows = F.all_rows(self.folder, self.manifest)
        self.vectors = F.Vectors(F.vector_blocks(self.folder, self.manifest))
        self.index = F.read_index_file(self.folder, mmap=True)
        if self.index.ntotal != len(self.rows):
            raise F.IndexFolderError(f"{self.folder}: index.faiss holds {self.index.ntotal} vectors for "
                                     f"{len(self.rows)} clips; rerun the audioret index command that built it")
        self.kind = ann.index_kind(self.index)
        ann.set_nprobe(self.index, int(self.manifest.get("nprobe") or 1))
        self.rerank = int(self.manifest.get("rerank") or 0) if self.kind == ann.IVFPQ else 0
        self.max_query_chars = max_query_chars
        self.model = model if model is not None else load_query_model(
            self.folder, self.manifest, checkpoint=checkpoint, text_model=text_model, device=device)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.rows)

    def embed(self, queries: list[str]) -> np.ndarray:
        """[Q, D] float32 unit vectors."""
        import torch

        with self._lock, torch.inference_mode():
            return self.model.embed_captions(list(queries)).float().cpu().numpy()

    def search_vectors(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return ann.search(self.index, q, min(k, len(self.rows)), rerank=self.rerank, vectors=self.vectors)

    def search(self, queries: list[str], k: int = 10) -> list[list[Hit]]:
        if k < 1:
            raise QueryError(f"top-k {k} must be at least 1")
        texts = [check_query(q, self.max_query_chars) for q in queries]
        scores, ids = self.search_vectors(self.embed(texts), k)
        return [[self.hit(r + 1, float(s), int(i)) for r, (s, i) in enumerate(zip(srow, irow)) if i >= 0]
                for srow, irow in zip(scores, ids)]

    def hit(self, rank: int, score: float, clip: int) -> Hit:
        row = self.rows[clip]
        return Hit(rank, round(score, 6), clip, row.id, row.path,
                   None if row.duration is None else round(row.duration, 3))


def read_queries(cfg: SearchConfig) -> list[str]:
    queries = list(cfg.queries)
    if cfg.queries_file is not None:
        path = Path(cfg.queries_file)
        if not path.is_file():
            raise QueryError(f"--queries {path}: file not found; give a text file with one query per line")
        queries += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not queries:
        raise QueryError("audioret search: no query; give one (audioret search INDEX \"a dog barks\") or "
                         "--queries FILE with one per line")
    return queries


def run(cfg: SearchConfig, searcher: Searcher | None = None) -> dict[str, Any]:
    """Every query's results as a JSON-ready dict."""
    if cfg.index is None:
        raise InputError("audioret search: give the index folder first: audioret search INDEX \"query\"")
    queries = read_queries(cfg)
    texts = [check_query(q, cfg.max_query_chars) for q in queries]  # all checked before the model loads
    if cfg.top_k < 1:
        raise QueryError(f"--top-k {cfg.top_k} must be at least 1")
    searcher = searcher or Searcher(cfg.index, checkpoint=cfg.checkpoint, beats_ckpt=cfg.beats_ckpt,
                                    text_model=cfg.text_model, device=cfg.device,
                                    max_query_chars=cfg.max_query_chars)
    results = searcher.search(texts, cfg.top_k)
    return {"index": str(cfg.index), "count": len(searcher),
            "queries": [{"query": q, "results": [asdict(h) for h in hits]} for q, hits in zip(texts, results)]}


def print_tables(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for q in result["queries"]:
        table = Table(title=f"{q['query']!r} ({result['count']} clips in {result['index']})")
        for col, just in (("rank", "right"), ("score", "right"), ("file", "left"), ("duration", "right")):
            table.add_column(col, justify=just)
        for h in q["results"]:
            dur = f"{h['duration']:.1f} s" if h["duration"] is not None else "?"
            table.add_row(str(h["rank"]), f"{h['score']:.3f}", h["id"] if h["path"] else f"{h['id']} (no file)", dur)
        console.print(table)


def parse(argv: list[str] | None) -> SearchConfig:
    parser = build_parser(SearchConfig, PROG)  # INDEX and QUERY ...: positional fields of SearchConfig
    return config_from_namespace(SearchConfig, parser.parse_intermixed_args(argv))


def main(argv: list[str] | None = None) -> int:
    from audioret.errors import report_user_error, user_error_types
    from audioret.logs import setup_logging

    setup_logging()
    cfg = parse(argv)
    try:
        result = run(cfg)
    except user_error_types() as err:
        return report_user_error(PROG, err)
    if cfg.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print_tables(result)
    return 0
