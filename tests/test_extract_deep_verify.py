"""extract --verify-sample N (store verify --deep): stored values equal a recomputation; finite
garbage written over rows (which checksums recorded afterwards cannot see) is found and named."""

from __future__ import annotations

import numpy as np
import pytest

from audioret.cli import main as audioret_main
from audioret.store import open_store

ARGS = ["--corpus", "clotho", "--splits", "val", "--audio-encoder", "tiny-beats", "--text-model", "tiny-roberta",
        "--num-workers", "0", "--no-progress"]


@pytest.fixture
def store(synth_corpus, tmp_path):
    path = tmp_path / "s.zarr"
    assert audioret_main(["extract", "--data-path", str(synth_corpus), "--store", str(path), *ARGS]) == 0
    return path


def _verify(corpus, store, n: int = 4) -> int:
    return audioret_main(["extract", "--data-path", str(corpus), "--store", str(store), *ARGS,
                          "--verify-sample", str(n)])


def test_an_intact_store_equals_a_recomputation(synth_corpus, store, caplog):
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    assert _verify(synth_corpus, store, 100) == 0
    assert "every sampled item" in caplog.text and "PROBLEM" not in caplog.text
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("kind,field", [("audio", "frames"), ("text", "tokens")])
def test_garbage_rows_are_found(synth_corpus, store, caplog, kind, field):
    import zarr

    st = open_store(store)
    table = st.audio("val") if kind == "audio" else st.text("val")
    rows = int(table.get(field, 0).shape[0])
    arr = zarr.open_array(str(store / "val" / kind / field / "data"), mode="r+")
    arr[:rows] = np.random.default_rng(0).normal(size=(rows, arr.shape[1])).astype(arr.dtype)  # finite garbage
    assert _verify(synth_corpus, store, 100) == 1
    assert f"val/{kind} item 0" in caplog.text and f"field {field}" in caplog.text


def test_low_precision_stores_compare_whole_items():
    from audioret.extract.deep import mismatch

    rng = np.random.default_rng(0)
    fresh = rng.normal(size=(62, 16)).astype(np.float32)
    bf16_like = fresh * (1 + 0.01 * rng.normal(size=fresh.shape))  # ~1 % rounding, as bf16 autocast gives
    assert mismatch(bf16_like, fresh) is not None  # too loose for an fp32-computed store
    assert mismatch(bf16_like, fresh, low_precision=True) is None
    assert mismatch(rng.normal(size=fresh.shape), fresh, low_precision=True) is not None  # garbage
