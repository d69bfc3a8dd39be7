"""The faiss layer of audioret search on synthetic clustered vectors: exact top-k, IVF-PQ with exact
re-scoring tuned to a recall target, memory-mapped reading, and an IVF-PQ index folder that
appends without retraining."""

from __future__ import annotations

import json

import numpy as np
import pytest

faiss = pytest.importorskip("faiss", reason="the search extra (faiss-cpu) is not installed")

from audioret.search import ann  # noqa: E402
from audioret.search import folder as F  # noqa: E402
from audioret.search.config import IndexConfig  # noqa: E402
from audioret.search.index import measure_recall, new_manifest, update_faiss  # noqa: E402
from audioret.search.query import Searcher  # noqa: E402


def clustered(n: int, d: int, seed: int, ncomp: int = 40) -> np.ndarray:
    """Unit vectors around ``ncomp`` shared centres (components fixed, points drawn by ``seed``)."""
    centers = np.random.default_rng(0).standard_normal((ncomp, d)).astype(np.float32)
    rng = np.random.default_rng(seed)
    x = centers[rng.integers(0, ncomp, n)] + 0.6 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(autouse=True)
def one_thread():
    old = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # small problems: OpenMP threads only contend on a shared machine
    yield
    faiss.omp_set_num_threads(old)


def test_exact_topk_over_blocks_equals_argsort():
    x, q = clustered(700, 24, 1), clustered(9, 24, 2)
    s, i = ann.exact_topk(q, [x[:250], x[250:251], x[251:]], 7)
    full = q @ x.T
    want = np.argsort(-full, axis=1, kind="stable")[:, :7]
    assert (i == want).all()
    np.testing.assert_allclose(s, np.take_along_axis(full, want, 1), atol=1e-6)
    assert ann.recall_at_k(i, want, 7) == 1.0 and ann.recall_at_k(i[:, ::-1], want, 7) == 1.0


def test_ivfpq_spec_follows_the_sizing_rules():
    big = ann.ivfpq_spec(1024, 1_000_000)
    assert big.factory == "OPQ64_256,IVF4096,PQ64np" and big.nlist == 4096
    assert ann.choose_kind(200_000, 200_000) == ann.FLAT and ann.choose_kind(200_001, 200_000) == ann.IVFPQ
    small = ann.ivfpq_spec(32, 2000)
    assert small.nbits == 4 and small.nlist <= 2000 // 39 and small.dim_out == 32 and 32 % small.m == 0


def test_ivfpq_rescored_reaches_the_recall_target_memory_mapped(tmp_path):
    x, q = clustered(2000, 32, 1), clustered(60, 32, 2)
    spec = ann.ivfpq_spec(32, len(x))
    index = ann.train_ivfpq(x, spec, opq_iters=2)
    ann.add_in_chunks(index, x, chunk=700)
    faiss.write_index(index, str(tmp_path / "i.faiss"))
    mm = faiss.read_index(str(tmp_path / "i.faiss"), faiss.IO_FLAG_MMAP)
    _, exact = ann.exact_topk(q, [x], 10)
    vecs = F.Vectors([x[:900], x[900:]])
    nprobe, recall, tried = ann.tune_nprobe(mm, q, exact, k=10, target=0.95, rerank=60, vectors=vecs)
    assert recall >= 0.95 and tried[nprobe] == recall and 1 <= nprobe <= spec.nlist
    s, i = ann.search(mm, q, 10, rerank=60, vectors=vecs)
    np.testing.assert_allclose(s, np.einsum("qd,qkd->qk", q, x[i]), atol=1e-5)  # exact cosines
    assert (np.diff(s, axis=1) <= 1e-7).all()


class _NoModel:
    def embed_captions(self, captions):  # never called: these tests search by vector
        raise AssertionError("no text model in this test")


def test_ivfpq_folder_appends_without_retraining(tmp_path):
    out, d = tmp_path / "idx", 32
    x = clustered(1600, d, 1)
    cfg = IndexConfig(checkpoint=tmp_path / "c.pt", out=out, audio_dir=tmp_path, kind="ivfpq", recall_queries=50)
    m = new_manifest({"path": "c.pt", "sha256": "0" * 64, "kind": "heads"}, {"audio": {}, "text": {}})
    m["dim"] = d

    def add_part(vectors, start):
        rows = [F.Row(f"c{start + j}", None, 1.0, f"k{start + j}", 0) for j in range(len(vectors))]
        m["parts"].append(F.write_part(out, len(m["parts"]), vectors, rows))
        m["count"] += len(rows)

    add_part(x[:1200], 0)
    measure_recall(cfg, out, m, update_faiss(cfg, out, m))
    trained = (out / F.TRAINED_FILE).read_bytes()
    assert m["kind"] == ann.IVFPQ and m["factory"].startswith("OPQ") and m["recall"]["recall"] >= 0.95
    add_part(x[1200:], 1200)
    measure_recall(cfg, out, m, update_faiss(cfg, out, m))
    F.write_json(out / F.MANIFEST, m)
    F.mark_complete(out, m)
    assert (out / F.TRAINED_FILE).read_bytes() == trained  # appended to the trained index, not retrained
    s = Searcher(out, model=_NoModel())
    assert s.index.ntotal == len(x) == len(s.rows) and s.kind == ann.IVFPQ and s.rerank == cfg.rerank
    saved = json.loads((out / F.MANIFEST).read_text())
    assert saved["nprobe"] >= 1 and saved["recall"]["recall"] >= 0.95 and saved["recall"]["queries"] == 50
    _, ids = s.search_vectors(x[1500:1510], 5)
    assert (ids[:, 0] == np.arange(1500, 1510)).all()  # each appended vector finds itself first
