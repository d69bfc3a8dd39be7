"""``audioret index``: embed a collection once into a self-describing faiss index folder
(see :mod:`audioret.search.folder`); a later run with the same --out appends, a rerun skips what is in."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from audioret.config import build_parser, config_from_namespace, save_json
from audioret.errors import InputError
from audioret.search import ann
from audioret.search import folder as F
from audioret.search.config import IndexConfig

log = logging.getLogger(__name__)
PROG = "audioret index"
MIN_IVFPQ = 1000  # PQ codebooks need ~39 training vectors per centroid


# ---- checks -------------------------------------------------------------------------------------
def check_flags(cfg: IndexConfig) -> None:
    if (cfg.store is None) == (cfg.audio_dir is None):
        raise InputError("audioret index: give exactly one of --store STORE [--split SPLIT] or --audio-dir DIR")
    if cfg.recall_queries < 1 or cfg.clips_per_part < 1 or cfg.batch_size < 1:
        raise InputError("audioret index: --recall-queries, --clips-per-part and --batch-size must be >= 1")
    if not 0 < cfg.target_recall <= 1:
        raise InputError(f"audioret index: --target-recall {cfg.target_recall} must be in (0, 1]")


def _short(d: dict[str, Any]) -> str:
    ident = {k: v for k, v in d.items() if k in ("name", "checkpoint_sha256", "weights_sha256", "architecture")}
    return ", ".join(f"{k}={str(v)[:12]}" for k, v in (ident or d).items())


def check_same_model(out: Path, manifest: dict[str, Any], ckpt: dict[str, Any], ident: dict[str, Any]) -> None:
    """Refuse vectors from another model: both sides named (the index's and this command's)."""
    for side in ("audio", "text"):
        old, new = manifest["encoders"].get(side) or {}, ident.get(side) or {}
        if old != new:
            keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise F.IndexFolderError(
                f"{out} was built with the {side} encoder [{_short(old)}], but --checkpoint {ckpt['path']} uses "
                f"[{_short(new)}] (differs in {', '.join(keys)}); its vectors would not be comparable: "
                "index into a new --out folder")
    was = manifest["checkpoint"]
    if was["sha256"] != ckpt["sha256"]:
        raise F.IndexFolderError(
            f"{out} was built with checkpoint {was['path']} (sha256 {was['sha256'][:12]}), but --checkpoint "
            f"{ckpt['path']} has sha256 {ckpt['sha256'][:12]}; its vectors would not be comparable: use the "
            "same checkpoint or index into a new --out folder")


def source_record(cfg: IndexConfig) -> dict[str, Any]:
    if cfg.store is not None:
        return {"kind": "store", "store": str(Path(cfg.store).resolve()), "split": cfg.split}
    return {"kind": "audio_dir", "audio_dir": str(Path(cfg.audio_dir).resolve())}


def new_manifest(ckpt: dict[str, Any], ident: dict[str, Any]) -> dict[str, Any]:
    return {"format": F.FORMAT, "version": F.VERSION, "kind": None, "factory": None, "dim": None, "count": 0,
            "checkpoint": ckpt, "encoders": ident, "sources": [], "parts": [], "indexed_parts": 0,
            "nprobe": 0, "rerank": 0, "recall": None, "skipped": {}}


def _existing(out: Path) -> dict[str, Any] | None:
    manifest = F.read_manifest(out)
    if manifest is None and out.is_dir() and any(out.iterdir()):
        raise F.IndexFolderError(f"{out}: exists and is not an audioret index folder; choose a new or empty --out")
    return manifest


# ---- embedding ----------------------------------------------------------------------------------
def open_source(cfg: IndexConfig):
    """(model or store source, encoder identity) through evaluate's loaders."""
    from audioret.evaluate.sources import HEADS, checkpoint_kind

    if cfg.store is not None:
        from audioret.evaluate.model import load_store_source
        from audioret.search.sources import heads_identity

        kind = checkpoint_kind(cfg.checkpoint)
        if kind != HEADS:
            raise InputError(f"{cfg.checkpoint}: a {kind} checkpoint embeds raw audio; index with --audio-dir "
                             "DIR instead of --store")
        src = load_store_source(cfg.checkpoint, cfg.store, cfg.split, device=cfg.device)
        return src, heads_identity(src.heads)
    from audioret.evaluate.sources import load_raw_model
    from audioret.search.sources import model_identity

    model = load_raw_model(cfg.checkpoint, beats_ckpt=cfg.beats_ckpt, text_model=cfg.text_model, device=cfg.device)
    return model, model_identity(model)


def embed_new(cfg: IndexConfig, out: Path, manifest: dict[str, Any], src: Any, source: int) -> int:
    """Write parts for the clips not yet in; returns how many clips were added."""
    from audioret.search.sources import audio_chunks, store_chunks

    skip = {r.key for r in F.all_rows(out, manifest)}
    failures: dict[str, str] = {}
    if cfg.store is not None:
        from audioret.store import open_store

        meta = open_store(cfg.store).metadata
        chunks = store_chunks(src, Path(cfg.store), cfg.split, meta, skip, source, cfg.clips_per_part,
                              cfg.batch_size)
    else:
        chunks = audio_chunks(src, Path(cfg.audio_dir), skip, source, cfg.clips_per_part, cfg.batch_size,
                              cfg.num_workers, failures)
    added = 0
    for vectors, rows in chunks:
        if manifest["dim"] is None:
            manifest["dim"] = int(vectors.shape[1])
        entry = F.write_part(out, len(manifest["parts"]), vectors, rows)
        manifest["parts"].append(entry)
        manifest["count"] += len(rows)
        added += len(rows)
        F.write_json(out / F.MANIFEST, manifest)  # the part is in: a stopped run keeps it
        log.info("%s: %d clips embedded (%d in the index)", out, added, manifest["count"])
    skipped = {k: v for k, v in manifest["skipped"].items() if k not in skip}
    skipped.update(failures)
    manifest["skipped"] = skipped
    if failures:
        log.warning("%d audio files could not be decoded and were left out (listed under 'skipped' in %s; "
                    "a rerun tries them again)", len(failures), out / F.MANIFEST)
    return added


# ---- faiss --------------------------------------------------------------------------------------
def _sample_rows(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, size=min(size, n), replace=False))


def update_faiss(cfg: IndexConfig, out: Path, manifest: dict[str, Any]) -> Any:
    """Add the parts not yet in index.faiss (training an IVF-PQ index at the first build)."""
    n, d = manifest["count"], manifest["dim"]
    counts = [p["count"] for p in manifest["parts"]]
    vecs = F.Vectors(F.vector_blocks(out, manifest))
    if manifest["kind"] is None:
        manifest["kind"] = cfg.kind if cfg.kind != "auto" else ann.choose_kind(n, cfg.flat_max)
    elif manifest["kind"] == ann.FLAT and n > cfg.flat_max:
        log.warning("%s: %d clips in an exact flat index (more than --flat-max %d): searches get slower; "
                    "build a new folder with --kind ivfpq for a faster index", out, n, cfg.flat_max)
    index, done = None, int(manifest.get("indexed_parts", 0))
    if done and (out / F.INDEX_FILE).is_file():
        index = F.read_index_file(out)
        if index.ntotal != sum(counts[:done]):
            log.warning("%s: index.faiss holds %d vectors, the manifest %d: rebuilding it from the parts",
                        out, index.ntotal, sum(counts[:done]))
            index = None
    if index is None:
        done = 0
        index = _empty_index(cfg, out, manifest, vecs, n, d)
    t0 = time.perf_counter()
    for part in manifest["parts"][done:]:
        ann.add_in_chunks(index, F.part_vectors(out, part))
    log.info("%s: added %d vectors to the %s index in %.1f s", out, n - sum(counts[:done]), manifest["kind"],
             time.perf_counter() - t0)
    F.write_index_file(out, index)
    manifest["indexed_parts"] = len(manifest["parts"])
    return index


def _empty_index(cfg: IndexConfig, out: Path, manifest: dict[str, Any], vecs: F.Vectors, n: int, d: int):
    if manifest["kind"] == ann.FLAT:
        manifest["factory"] = "Flat"
        return ann.new_flat(d)
    if (out / F.TRAINED_FILE).is_file():
        return F.read_index_file(out, F.TRAINED_FILE)
    if n < MIN_IVFPQ:
        raise InputError(f"{out}: {n} clips are too few to train an IVF-PQ index (at least {MIN_IVFPQ}); "
                         "use --kind flat (exact, and fast at this size)")
    spec = ann.ivfpq_spec(d, n)
    rows = _sample_rows(n, ann.train_sample_size(spec, n, cfg.train_max), np.random.default_rng(cfg.seed))
    t0 = time.perf_counter()
    index = ann.train_ivfpq(vecs(rows), spec)
    log.info("%s: trained %s on %d vectors in %.1f s", out, spec.factory, len(rows), time.perf_counter() - t0)
    F.write_index_file(out, index, F.TRAINED_FILE)
    manifest.update(factory=spec.factory, train_rows=len(rows), rerank=cfg.rerank)
    return index


def measure_recall(cfg: IndexConfig, out: Path, manifest: dict[str, Any], index: Any) -> dict[str, Any]:
    """recall@10 vs exact search on held-out vectors used as queries (the nprobe is tuned on them
    unless --nprobe is given); recorded in the manifest."""
    n, k = manifest["count"], 10
    vecs = F.Vectors(F.vector_blocks(out, manifest))
    rng = np.random.default_rng(cfg.seed + 1)
    q_rows = _sample_rows(n, cfg.recall_queries, rng)
    queries = vecs(q_rows)
    t0 = time.perf_counter()
    _, exact = ann.exact_topk(queries, vecs.blocks, k)
    rerank = manifest.get("rerank", 0) if manifest["kind"] == ann.IVFPQ else 0
    if cfg.nprobe is not None and manifest["kind"] == ann.IVFPQ:
        ann.set_nprobe(index, cfg.nprobe)
        _, ids = ann.search(index, queries, k, rerank=rerank, vectors=vecs)
        nprobe, recall, tried = cfg.nprobe, ann.recall_at_k(ids, exact, k), {}
    else:
        nprobe, recall, tried = ann.tune_nprobe(index, queries, exact, k=k, target=cfg.target_recall,
                                                rerank=rerank, vectors=vecs)
    manifest["nprobe"] = int(nprobe)
    rec = {"k": k, "recall": recall, "queries": len(q_rows), "nprobe": int(nprobe), "rerank": rerank,
           "target": cfg.target_recall if manifest["kind"] == ann.IVFPQ else None,
           "per_nprobe": {str(p): r for p, r in tried.items()},
           "query_sample": "held-out stored clip vectors (seeded), compared with exact inner-product search",
           "seconds": round(time.perf_counter() - t0, 3)}
    manifest["recall"] = rec
    return rec


# ---- the command --------------------------------------------------------------------------------
def run(cfg: IndexConfig) -> dict[str, Any]:
    """Build or extend ``cfg.out``; returns its manifest."""
    from audioret.search.deps import faiss
    from audioret.search.sources import checkpoint_record

    check_flags(cfg)
    faiss("audioret index")
    out = Path(cfg.out)
    manifest = _existing(out)
    ckpt = checkpoint_record(Path(cfg.checkpoint))
    if manifest is not None:  # cheap check before any model loads
        was = manifest["checkpoint"]
        if was["sha256"] != ckpt["sha256"]:
            check_same_model(out, manifest, ckpt, manifest["encoders"])
    src, ident = open_source(cfg)
    if manifest is None:
        out.mkdir(parents=True, exist_ok=True)
        manifest = new_manifest(ckpt, ident)
    check_same_model(out, manifest, ckpt, ident)
    F.mark_incomplete(out)
    record = source_record(cfg)
    if record not in manifest["sources"]:
        manifest["sources"].append(record)
    added = embed_new(cfg, out, manifest, src, manifest["sources"].index(record))
    if manifest["count"] == 0:
        raise F.IndexFolderError(f"{out}: no clip could be embedded (see the warnings above); nothing to index")
    fresh = added or manifest.get("indexed_parts", 0) != len(manifest["parts"]) or not (out / F.INDEX_FILE).is_file()
    if fresh or manifest["recall"] is None:
        index = update_faiss(cfg, out, manifest)
        measure_recall(cfg, out, manifest, index)
    manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    F.write_json(out / F.MANIFEST, manifest)
    save_json(cfg, out / F.CONFIG)
    F.mark_complete(out, manifest)
    rec = manifest["recall"]
    log.info("%s: %d clips (%d added), %s index, recall@10 %.3f vs exact (nprobe %d)", out, manifest["count"],
             added, manifest["kind"], rec["recall"], manifest["nprobe"])
    return manifest


def main(argv: list[str] | None = None) -> int:
    from audioret.errors import report_user_error, user_error_types
    from audioret.logs import setup_logging

    setup_logging()
    parser = build_parser(IndexConfig, PROG)
    cfg = config_from_namespace(IndexConfig, parser.parse_args(argv))
    try:
        m = run(cfg)
    except user_error_types() as err:
        return report_user_error(PROG, err)
    print(f"{cfg.out}: {m['count']} clips, {m['kind']} index ({m['factory']}), recall@10 "
          f"{m['recall']['recall']:.3f} vs exact on {m['recall']['queries']} held-out queries"
          + (f", nprobe {m['nprobe']}" if m["kind"] == ann.IVFPQ else ""))
    return 0


__all__ = ["run", "main", "check_same_model"]
