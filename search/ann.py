"""faiss index choice, training and search (pure functions over float32 unit vectors).

Sizing follows autofaiss's rules (the package itself pins numpy < 2): exact inner product
(``IndexFlatIP``) up to a few hundred thousand clips; beyond that ``OPQ64_256,IVF{~4 sqrt N},PQ64``
trained on a sample. The IVF-PQ candidates are re-scored exactly from the stored vectors
(``rerank`` candidates per query), so scores are true cosines and recall@10 stays high at a small
``nprobe``; ``nprobe`` is tuned at build time on held-out queries and recorded in the index folder.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from audioret.search.deps import faiss as _faiss

log = logging.getLogger(__name__)

FLAT, IVFPQ = "flat", "ivfpq"
NPROBE_STEPS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class IvfPqSpec:
    """What ``index_factory`` builds for an IVF-PQ index (recorded in the index folder)."""

    factory: str
    nlist: int
    m: int          # PQ sub-quantizers
    nbits: int      # bits per sub-quantizer code
    dim_out: int    # OPQ output dimension


def choose_kind(n: int, flat_max: int) -> str:
    """Exact search while it is cheap enough (autofaiss: flat up to a few hundred thousand)."""
    return FLAT if n <= flat_max else IVFPQ


def ivfpq_spec(d: int, n: int) -> IvfPqSpec:
    """``OPQ{m}_{dout},IVF{nlist},PQ{m}[x4]np`` for ``n`` vectors of dimension ``d``.

    nlist: the power of two nearest 4 sqrt(n) (autofaiss's range is 4-16 sqrt(n)), at most n / 39
    (faiss wants >= 39 training points per centroid). dout = 256 (or d when smaller), m = 64 (4 dims
    per code, or dout / 4 for small d). 4-bit codes when there are too few vectors to train 256
    centroids per sub-quantizer. ``np``: no polysemous training (slow, unused by IVF search)."""
    nlist = 2 ** max(0, round(math.log2(max(1.0, 4 * math.sqrt(n)))))
    nlist = max(1, min(nlist, n // 39 or 1))
    dout = min(256, d)
    m = 64 if dout % 64 == 0 and dout >= 256 else max(1, dout // 4)
    while dout % m:
        m -= 1
    nbits = 8 if n >= 39 * 256 else 4
    pq = f"PQ{m}" + ("" if nbits == 8 else f"x{nbits}") + "np"
    return IvfPqSpec(f"OPQ{m}_{dout},IVF{nlist},{pq}", nlist, m, nbits, dout)


def train_sample_size(spec: IvfPqSpec, n: int, cap: int) -> int:
    """Training vectors: enough for the coarse quantizer (39 per list) and the PQ codebooks
    (64 per centroid), at most ``cap`` and n."""
    return int(min(n, max(39 * spec.nlist, 64 * 2 ** spec.nbits, 1), cap))


def new_flat(d: int):
    return _faiss().IndexFlatIP(d)


def train_ivfpq(sample: np.ndarray, spec: IvfPqSpec, opq_iters: int = 4, pq_points_per_centroid: int = 40):
    """A trained, empty IVF-PQ index. OPQ rounds, k-means iterations and PQ training points are
    capped (faiss's defaults, 50 OPQ rounds and 256 points per centroid, take tens of minutes on 2
    cores; the exact re-scoring of candidates makes the last bits of code quality matter little).
    40 points per centroid stays above faiss's 39 (no warning per sub-quantizer)."""
    faiss = _faiss()
    index = faiss.index_factory(sample.shape[1], spec.factory, faiss.METRIC_INNER_PRODUCT)
    opq = faiss.downcast_VectorTransform(index.chain.at(0))
    opq.niter, opq.niter_pq_0, opq.niter_pq, opq.verbose = opq_iters, 2 * opq_iters, 2, False
    opq.max_train_points = min(opq.max_train_points, pq_points_per_centroid * 2 ** spec.nbits)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    ivf.pq.cp.max_points_per_centroid = pq_points_per_centroid
    ivf.pq.cp.niter = 15
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return index


def set_nprobe(index, nprobe: int) -> None:
    if index_kind(index) == IVFPQ:
        _faiss().extract_index_ivf(index).nprobe = int(nprobe)


def index_kind(index) -> str:
    faiss = _faiss()
    try:
        faiss.extract_index_ivf(index)
        return IVFPQ
    except RuntimeError:
        return FLAT


def add_in_chunks(index, vectors: np.ndarray, chunk: int = 65536) -> None:
    for i in range(0, len(vectors), chunk):
        index.add(np.ascontiguousarray(vectors[i:i + chunk], dtype=np.float32))


def search(index, queries: np.ndarray, k: int, *, rerank: int = 0,
           vectors: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores [Q, k] descending, row ids [Q, k]; -1 where fewer than k exist).

    With ``rerank`` > k and ``vectors(ids) -> [len(ids), D]``, the index proposes ``rerank``
    candidates and their exact inner products decide the order (IVF-PQ)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    k = max(1, int(k))
    if not rerank or rerank <= k or vectors is None:
        return index.search(q, k)
    _, cand = index.search(q, int(rerank))  # [Q, R]
    scores = np.full((len(q), k), -np.inf, dtype=np.float32)
    ids = np.full((len(q), k), -1, dtype=np.int64)
    for i, row in enumerate(cand):
        row = row[row >= 0]
        if not len(row):
            continue
        s = vectors(row) @ q[i]  # [R]
        top = np.argsort(-s, kind="stable")[:k]
        scores[i, :len(top)], ids[i, :len(top)] = s[top], row[top]
    return scores, ids


def exact_topk(queries: np.ndarray, blocks: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k over vector blocks (stored parts, memory-mapped): the ground truth."""
    q = np.asarray(queries, dtype=np.float32)
    best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    offset = 0
    for block in blocks:
        for j in range(0, len(block), 65536):
            part = np.asarray(block[j:j + 65536], dtype=np.float32)
            s = q @ part.T  # [Q, b]
            ids = np.broadcast_to(np.arange(offset + j, offset + j + len(part)), s.shape)
            s_all, i_all = np.concatenate([best_s, s], 1), np.concatenate([best_i, ids], 1)
            keep = np.argsort(-s_all, axis=1, kind="stable")[:, :k]
            best_s, best_i = np.take_along_axis(s_all, keep, 1), np.take_along_axis(i_all, keep, 1)
        offset += len(block)
    return best_s, best_i


def recall_at_k(approx: np.ndarray, exact: np.ndarray, k: int = 10) -> float:
    """Mean |approx top-k ∩ exact top-k| / k over queries."""
    hits = [len(set(a[:k].tolist()) & set(e[:k].tolist()) - {-1}) for a, e in zip(approx, exact)]
    denom = min(k, exact.shape[1])
    return float(np.mean(hits) / denom) if hits else 1.0


def tune_nprobe(index, queries: np.ndarray, exact_ids: np.ndarray, *, k: int, target: float, rerank: int,
                vectors: Callable[[np.ndarray], np.ndarray] | None) -> tuple[int, float, dict[int, float]]:
    """Smallest nprobe (powers of two up to nlist) whose recall@k on ``queries`` reaches ``target``;
    (nprobe, recall, recall per nprobe tried). Flat indexes return (0, recall, {})."""
    if index_kind(index) == FLAT:
        _, ids = search(index, queries, k)
        return 0, recall_at_k(ids, exact_ids, k), {}
    nlist = _faiss().extract_index_ivf(index).nlist
    tried: dict[int, float] = {}
    for nprobe in [p for p in NPROBE_STEPS if p < nlist] + [nlist]:
        set_nprobe(index, nprobe)
        _, ids = search(index, queries, k, rerank=rerank, vectors=vectors)
        tried[nprobe] = recall_at_k(ids, exact_ids, k)
        if tried[nprobe] >= target:
            return nprobe, tried[nprobe], tried
    best = max(tried, key=lambda p: (tried[p], -p))
    set_nprobe(index, best)
    log.warning("recall@%d reached %.3f at most (nprobe %d), below the target %.2f", k, tried[best], best, target)
    return best, tried[best], tried
