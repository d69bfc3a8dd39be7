"""Search benchmark: flat vs IVF-PQ over N x 1024 synthetic unit embeddings.

Embeddings are clustered and low-rank like real retrieval embeddings (pure isotropic noise has no
neighbours worth finding): a 64-d Gaussian mixture (N/500 components) mixed to 1024 dims plus
small noise, L2-normalised. Queries are fresh draws from the same mixture (not in the index).
For each kind: build time, index bytes and peak RSS, query latency p50/p99 for one query at a time
and per query in batches, recall@10 against exact search. IVF-PQ uses what ``audioret index``
builds (audioret.search.ann: OPQ64_256,IVF{~4 sqrt N},PQ64, candidates re-scored exactly from the
stored vectors, memory-mapped like an index folder's parts) with nprobe tuned to --target-recall.

    python benchmarks/bench_search.py [--n 1000000] [--threads 2] [--queries 200]
Goal at 1M on 2 cores: IVF-PQ p50 < 20 ms per query with recall@10 >= 0.95.

Measured 2026-12-02 on a shared 2-core machine (load 4-12 from other jobs; --threads 1, so numbers
are pessimistic, and flat numbers especially: BLAS ran at ~1-3 GFLOP/s instead of ~200):
  N=1M   OPQ64_256,IVF4096,PQ64 nprobe=4 rerank=100: build 795 s (training on 159,744: 447 s),
         74 MB index, 1 query p50 0.94 ms / p99 4.46 ms, batched 0.96 ms/query, recall@10 0.997
         (0.658 without re-scoring)
  N=100k IVF1024 nprobe=8: build 222 s, p50 0.87 ms / p99 7.7 ms, recall@10 0.999;
         flat: p50 194 ms / p99 345 ms, 391 MB
  N=20k  IVF512 nprobe=16: p50 1.06 ms, recall@10 1.000; flat: p50 52 ms
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from audioret.search import ann
from audioret.search.deps import faiss as _faiss
from audioret.search.folder import Vectors

D = 1024


def synth(n: int, seed: int, ncomp: int, chunk: int = 100_000) -> np.ndarray:
    """[n, D] float32 unit vectors from the shared mixture (components and mixing fixed by seed 0;
    ``seed`` draws the points, so queries come from the same mixture as the index)."""
    base = np.random.default_rng(0)
    centers = base.standard_normal((ncomp, 64)).astype(np.float32) * 2.0
    mix = (base.standard_normal((64, D)) / 8).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, D), dtype=np.float32)
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        z = centers[rng.integers(0, ncomp, m)] + rng.standard_normal((m, 64)).astype(np.float32)
        x = z @ mix + 0.05 * rng.standard_normal((m, D)).astype(np.float32)
        out[i:i + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def latency(fn, queries: np.ndarray, batch: int) -> tuple[float, float]:
    """(p50, p99) milliseconds per query: one query at a time (batch=1) or per query of a batch."""
    times = []
    for i in range(0, len(queries), batch):
        q = queries[i:i + batch]
        t0 = time.perf_counter()
        fn(q)
        times.append((time.perf_counter() - t0) * 1000 / len(q))
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="vectors in the index")
    ap.add_argument("--queries", type=int, default=200, help="latency and recall queries")
    ap.add_argument("--batch", type=int, default=64, help="queries per batch for the batched latency")
    ap.add_argument("--threads", type=int, default=2, help="faiss OpenMP threads (the goal is on 2 cores)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rerank", type=int, default=100, help="IVF-PQ candidates re-scored exactly")
    ap.add_argument("--target-recall", type=float, default=0.95)
    ap.add_argument("--train-max", type=int, default=200_000)
    ap.add_argument("--kinds", nargs="+", default=["flat", "ivfpq"], choices=["flat", "ivfpq"])
    args = ap.parse_args(argv)
    faiss = _faiss()
    faiss.omp_set_num_threads(args.threads)
    k = args.k
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vectors.npy"
        ncomp = max(8, args.n // 500)
        np.save(path, synth(args.n, 1, ncomp))
        x = np.load(path, mmap_mode="r")  # the stored parts are memory-mapped the same way
        queries = synth(args.queries, 2, ncomp)
        print(f"N={args.n} D={D} float32 ({args.n * D * 4 / 2**30:.2f} GiB), {args.queries} queries, "
              f"threads={args.threads}; data made in {time.perf_counter() - t0:.1f} s", flush=True)
        t0 = time.perf_counter()
        _, exact = ann.exact_topk(queries, [x], k)
        print(f"exact top-{k} ground truth (numpy blocks): {time.perf_counter() - t0:.1f} s", flush=True)
        rows = []
        for kind in args.kinds:
            rows.append(bench_kind(kind, x, queries, exact, args, Path(tmp)))
    print()
    head = f"{'kind':<48} {'build s':>8} {'index MB':>9} {'RSS MB':>7} {'1q p50':>7} {'1q p99':>7} " \
           f"{'batch p50':>9} {'batch p99':>9} {'R@10':>6}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['name']:<48} {r['build']:>8.1f} {r['mb']:>9.0f} {r['rss']:>7.0f} {r['p50']:>7.2f} {r['p99']:>7.2f} "
              f"{r['bp50']:>9.3f} {r['bp99']:>9.3f} {r['recall']:>6.3f}")
    print(f"(latency in ms per query; batch = {args.batch} queries per call; RSS = peak of the process so far)")
    return 0


def bench_kind(kind: str, x: np.ndarray, queries: np.ndarray, exact: np.ndarray, args, tmp: Path) -> dict:
    faiss = _faiss()
    n, k = len(x), args.k
    vecs = Vectors([x])
    t0 = time.perf_counter()
    if kind == "flat":
        index = ann.new_flat(D)
        ann.add_in_chunks(index, x)
        name, rerank, extra = "flat (IndexFlatIP)", 0, ""
    else:
        spec = ann.ivfpq_spec(D, n)
        ntrain = ann.train_sample_size(spec, n, args.train_max)
        sample = np.asarray(x[np.sort(np.random.default_rng(0).choice(n, ntrain, replace=False))])
        index = ann.train_ivfpq(sample, spec)
        t_train = time.perf_counter() - t0
        ann.add_in_chunks(index, x)
        name, rerank = f"{spec.factory}", args.rerank
        extra = f"trained on {ntrain} in {t_train:.1f} s, "
    build = time.perf_counter() - t0
    file = tmp / f"{kind}.faiss"
    faiss.write_index(index, str(file))
    del index
    index = faiss.read_index(str(file), faiss.IO_FLAG_MMAP)
    nprobe, recall, tried = ann.tune_nprobe(index, queries, exact, k=k, target=args.target_recall, rerank=rerank,
                                            vectors=vecs)
    if kind == "ivfpq":
        _, ids = ann.search(index, queries, k)
        raw = ann.recall_at_k(ids, exact, k)
        name += f" nprobe={nprobe} rerank={rerank}"
        extra += f"recall per nprobe {tried}, without re-scoring {raw:.3f}"
    fn = lambda q: ann.search(index, q, k, rerank=rerank, vectors=vecs)  # noqa: E731
    fn(queries[:4])  # warm
    p50, p99 = latency(fn, queries, 1)
    bp50, bp99 = latency(fn, queries, args.batch)
    print(f"{kind}: built in {build:.1f} s ({extra or 'exact'}); recall@{k} {recall:.3f}; "
          f"p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)
    return {"name": name, "build": build, "mb": file.stat().st_size / 2**20, "rss": rss_mb(), "p50": p50,
            "p99": p99, "bp50": bp50, "bp99": bp99, "recall": recall}


if __name__ == "__main__":
    raise SystemExit(main())
