"""Fast pread path vs the zarr path: chosen automatically, identical arrays, fork/replace/damage safe."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec

from audioret.store import StoreError, create_store, open_store
from audioret.store._fastread import MAX_U64, ShardRowReader, fast_layout
from audioret.store.dataset import FeatureDataset, collate

D = 8
CR, SC = 4, 2  # 4-row chunks, 8-row shards: most items span chunk and shard boundaries


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]]]:
    rng = np.random.default_rng(seed)
    T = rng.integers(0, 15, n)
    T[3] = 0        # an item with no frames
    T[10:14] = 9    # failed items below: > 1 whole chunk of zeros -> all-fill chunks (not stored)
    W = rng.integers(1, 3, n)
    return T, W, {i: (rng.standard_normal((T[i], D)).astype(np.float16),
                      rng.standard_normal((W[i], D)).astype(np.float16)) for i in range(n)}


FAILED = (3, 10, 11, 12, 13)  # 3 has zero rows; 10-13 fill whole chunks


def _write(path, T, W, data, codec: str = "none", parts: int = 4) -> None:
    st = create_store(path, {"x": 1}, codec=codec)
    plan = st.plan_audio("dev", [f"c{i}.wav" for i in range(len(T))], T, W, dim=D, num_parts=parts,
                         chunk_rows=CR, shard_chunks=SC)
    for p in range(plan.num_parts):
        with st.writer("dev", "audio", p, flush_bytes=300) as w:
            for i in w.pending():
                if i in FAILED:
                    w.fail(i, "undecodable")
                else:
                    w.put(i, frames=data[i][0], windows=data[i][1])


def _want(data, i: int, field: int = 0) -> np.ndarray:
    return np.zeros_like(data[i][field]) if i in FAILED else data[i][field]


@pytest.fixture
def local(tmp_path):
    T, W, data = _data(40, seed=3)
    _write(tmp_path / "s.zarr", T, W, data)
    return tmp_path / "s.zarr", T, data


def _pair(path):
    fast = open_store(path).audio("dev", cache_bytes=0)
    slow = open_store(path).audio("dev", cache_bytes=0)
    slow.fast_reads = False
    return fast, slow


def test_fast_path_matches_zarr_on_random_batches(local):
    path, T, data = local
    fast, slow = _pair(path)
    assert fast._fast_reader("frames") is not None and slow._fast_reader("frames") is None
    rng = np.random.default_rng(0)
    batches = [rng.choice(40, size=rng.integers(1, 20), replace=False) for _ in range(25)]
    batches += [np.arange(40), np.array([3]), np.array([3, 10]), np.array([7, 7, 2])]  # repeats too
    for idx in batches:
        for field in ("frames", "windows"):
            a, b = fast.batch(field, idx), slow.batch(field, idx)
            assert a.values.dtype == b.values.dtype and a.values.shape == b.values.shape
            np.testing.assert_array_equal(a.values, b.values)
            np.testing.assert_array_equal(a.mask, b.mask)
        for k, i in enumerate(idx.tolist()):
            np.testing.assert_array_equal(fast.batch("frames", idx).values[k, :T[i]], _want(data, i))
    c1, c2 = fast.batch("frames", batches[0], max_len=5), slow.batch("frames", batches[0], max_len=5)
    np.testing.assert_array_equal(c1.values, c2.values)
    # the data really covers the cases: items across shard boundaries, fill chunks, missing shard files
    off, ln = fast.offsets("frames"), fast.lengths("frames")
    assert ((off // (CR * SC)) != ((off + ln - 1) // (CR * SC)))[ln > 0].any()
    reader = fast._fast_reader("frames")
    indexes = [ix for _, ix in reader._index.values() if ix is not None]
    assert any((ix[:, 0] == np.uint64(MAX_U64)).any() for ix in indexes)


def test_rows_into_equals_concatenated_batches_on_every_path(local):
    """Flat block reads (what streaming uses): the items' rows back to back, equal on the pread,
    zarr and loaded paths, for runs of consecutive items (merged reads), gaps, repeats, failed
    (fill) items and zero-row items; a dirty output buffer is fully overwritten (the streaming
    arena is reused across blocks)."""
    path, T, data = local
    fast, slow = _pair(path)
    loaded = open_store(path).audio("dev", cache_bytes=0)
    loaded.load("frames")
    loaded.load("windows")
    rng = np.random.default_rng(1)
    cases = [np.arange(40), np.arange(5, 23), np.array([3]), np.arange(9, 15), np.array([0, 1, 2, 7, 8, 30, 31]),
             np.array([7, 7, 2]), np.array([], dtype=np.int64)]
    cases += [np.sort(rng.choice(40, size=rng.integers(1, 30), replace=False)) for _ in range(10)]
    for idx in cases:
        for field, f in (("frames", 0), ("windows", 1)):
            want = np.concatenate([_want(data, i, f) for i in idx.tolist()] or [np.zeros((0, D), np.float16)])
            for table in (fast, slow, loaded):
                out = np.full((len(want), D), np.nan, dtype=np.float16)
                table.rows_into(field, idx, out)
                np.testing.assert_array_equal(out, want)
    n = int(T[0] + T[1])
    for bad in (np.zeros((n + 1, D), np.float16), np.zeros((n, D + 1), np.float16)):
        for table in (fast, slow, loaded):  # a wrong width would make pread read the wrong bytes
            with pytest.raises(StoreError, match=r"output has shape"):
                table.rows_into("frames", np.array([0, 1]), bad)


def test_missing_shard_file_reads_as_zeros(local):
    path, T, data = local
    fast, slow = _pair(path)
    off = fast.offsets("frames")
    first, last = off // (CR * SC), (off + T - 1) // (CR * SC)
    inside = np.flatnonzero((first == last) & (T > 0) & ~np.isin(np.arange(40), FAILED))
    s = int(first[inside[0]])
    (path / "dev" / "audio" / "frames" / "data" / "c" / str(s) / "0").unlink()  # as if all fill
    idx = np.arange(40)
    np.testing.assert_array_equal(fast.batch("frames", idx).values, slow.batch("frames", idx).values)
    gone = inside[first[inside] == s]
    assert not fast.batch("frames", gone).values.any()
    assert fast.batch("frames", [int(i) for i in inside if first[i] != s]).values.any()


def _shards(path):
    return [p for p in sorted((path / "dev" / "audio" / "frames" / "data" / "c").rglob("*")) if p.is_file()]


@pytest.mark.parametrize("codec", ["blosc-zstd", "zstd"])
def test_compressed_codecs_fall_back_to_zarr(tmp_path, codec):
    T, W, data = _data(20, seed=4)
    _write(tmp_path / "c.zarr", T, W, data, codec=codec)
    t = open_store(tmp_path / "c.zarr").audio("dev")
    assert t._fast_reader("frames") is None
    b = t.batch("frames", np.arange(20))
    for i in range(20):
        np.testing.assert_array_equal(b.values[i, :T[i]], _want(data, i))


def test_memory_store_falls_back_to_zarr():
    T, W, data = _data(20, seed=5)
    store = zarr.storage.MemoryStore()
    _write(store, T, W, data)
    t = open_store(store).audio("dev")
    assert t._fast_reader("frames") is None
    np.testing.assert_array_equal(t.get("frames", 5), _want(data, 5))


def test_replaced_shard_is_reread_and_fork_resets_fds(local):
    path, T, data = local
    fast, _ = _pair(path)
    i = int(np.flatnonzero((T > 0) & ~np.isin(np.arange(40), FAILED))[0])
    before = fast.get("frames", i)
    reader = fast._fast_reader("frames")
    fds = [fd for fd, _ in reader._fds.values()]
    assert fds and all(_is_open(fd) for fd in fds)
    reader._pid = -1  # as seen from a forked child: inherited fds are closed, state rebuilt
    reader._check_pid()
    assert not reader._fds and not reader._index and not any(_is_open(fd) for fd in fds)
    np.testing.assert_array_equal(fast.get("frames", i), before)
    # a writer replaces the shard file (zarr writes a temp file and renames it): new bytes are seen
    st = open_store(path, mode="r+")
    arr = st.group["dev/audio/frames/data"]
    o = int(fast.offsets("frames")[i])
    arr[o:o + T[i]] = before + 1
    np.testing.assert_array_equal(fast.get("frames", i), before + 1)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def test_dataset_workers_after_parent_reads(local):
    path, T, data = local
    ds = FeatureDataset(path, "dev", "audio", ["frames"])
    ds.table.batch("frames", np.arange(40))  # the parent opened fds before forking workers
    loader = torch.utils.data.DataLoader(ds, batch_size=7, shuffle=True, num_workers=2, collate_fn=collate,
                                         multiprocessing_context="fork")
    seen = set()
    for batch in loader:
        for k, i in enumerate(batch["index"].tolist()):
            seen.add(i)
            np.testing.assert_array_equal(batch["frames"][k, :T[i]].numpy(), _want(data, i))
    assert seen == set(range(40)) - set(FAILED)


def test_damaged_shards_raise_clear_errors(local):
    path, T, data = local
    shard = _shards(path)[0]
    raw = bytearray(shard.read_bytes())
    raw[-10] ^= 0xFF  # inside the index: checksum mismatch
    shard.write_bytes(bytes(raw))
    fast, _ = _pair(path)
    with pytest.raises(StoreError, match="checksum"):
        fast.batch("frames", np.arange(40))
    shard.write_bytes(bytes(raw[:20]))  # shorter than its index
    fast, _ = _pair(path)
    with pytest.raises(StoreError, match="shorter than its"):
        fast.batch("frames", np.arange(40))


@pytest.mark.parametrize("endian,location,crc", [("big", "end", True), ("little", "start", True),
                                                 ("little", "end", False)])
def test_other_zarr_layouts_read_exactly(tmp_path, endian, location, crc):
    """The layout is read from zarr.json: byte order, index position, index checksum."""
    rows, dim = 45, 6
    codec = ShardingCodec(chunk_shape=(4, dim), codecs=[BytesCodec(endian=endian)],
                          index_codecs=[BytesCodec()] + ([Crc32cCodec()] if crc else []), index_location=location)
    arr = zarr.create_array(zarr.storage.LocalStore(tmp_path / "a"), shape=(rows, dim), dtype="float32",
                            chunks=(16, dim), serializer=codec, compressors=None, fill_value=0)
    vals = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)
    vals[4:12] = 0  # two all-fill chunks in the first shard
    vals[16:32] = 0  # a whole shard of fill: no file
    arr[:] = vals
    lay = fast_layout(arr)
    assert lay is not None and lay.swap == (endian != os.sys.byteorder)
    off = np.array([0, 3, 10, 14, 30, 40, 44, 7])
    ln = np.array([5, 9, 7, 20, 11, 5, 1, 0])
    out = np.zeros((len(off), ln.max(), dim), np.float32)
    ShardRowReader(lay).read_into(out, off, ln)
    for b, (o, n) in enumerate(zip(off, ln)):
        np.testing.assert_array_equal(out[b, :n], vals[o:o + n])
        assert not out[b, n:].any()


@pytest.mark.parametrize("codec,reads", [("none", 150), ("zstd", 20)])
def test_one_table_read_from_several_threads(tmp_path, codec, reads):
    """StreamingBatches' read threads share one ItemTable. Its pread reader keeps a shared fd LRU
    (closing the least recent beyond ``max_open``: a descriptor another thread was reading from)
    and the zarr path a shared chunk cache (evicting chunks another thread had just ensured):
    concurrent reads raised EBADF / KeyError, or could read another file through a reused fd."""
    import threading

    T, W, data = _data(120, seed=5)  # ~100 shards of 8 rows per field
    _write(tmp_path / "t.zarr", T, W, data, codec=codec)
    table = open_store(tmp_path / "t.zarr").audio("dev", cache_bytes=0)  # zarr: every chunk is evicted
    if codec == "none":
        table._fast_reader("frames").max_open = 1  # as a split with more shards than max_open
    lens, errors = table.lengths("frames"), []

    def read(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(reads):
                idx = np.arange(a := int(rng.integers(0, 110)), a + 10)
                out = np.empty((int(lens[idx].sum()), D), np.float16)
                table.rows_into("frames", idx, out)
                np.testing.assert_array_equal(out, np.concatenate([_want(data, i) for i in idx]))
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            errors.append(repr(err))

    threads = [threading.Thread(target=read, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_fork_while_a_parent_thread_holds_the_read_lock(tmp_path, codec):
    """A DataLoader forks workers while a streaming read thread may be mid-read: the child's copy
    of the table's lock is then held forever. The child must get a fresh lock (and, on the zarr
    path, an empty chunk cache) instead of hanging on its first read."""
    import multiprocessing as mp

    T, W, data = _data(40, seed=2)
    _write(tmp_path / "t.zarr", T, W, data, codec=codec)
    table = open_store(tmp_path / "t.zarr").audio("dev")
    idx = np.arange(20, 30)
    out = np.empty((int(table.lengths("frames")[idx].sum()), D), np.float16)
    table.rows_into("frames", idx, out)  # opens the reader / fills the cache in the parent
    fast = table._fast_reader("frames")
    assert (fast is not None) == (codec == "none")
    held = fast._guard() if fast is not None else table._cache("frames").lock
    want = np.concatenate([_want(data, i) for i in idx])

    def child() -> None:
        got = np.empty_like(want)
        table.rows_into("frames", idx, got)
        os._exit(0 if np.array_equal(got, want) else 3)

    with held:  # as a read thread of the parent would, at the moment of the fork
        proc = mp.get_context("fork").Process(target=child)
        proc.start()
        proc.join(timeout=60)
    hung = proc.is_alive()
    if hung:
        proc.kill()
        proc.join()
    assert not hung, "the forked child hung on the lock its parent held"
    assert proc.exitcode == 0


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_first_reads_after_a_fork_come_from_several_threads(tmp_path, codec):
    """A forked child (DataLoader worker, a forked DDP rank) whose first reads come from several
    read threads at once. Resetting the readers' per-process state lazily, on a pid mismatch at
    first use, raced there: each thread took its own new lock and reset the state under the
    others (double-closed the parent's fds while another thread opened new ones: EBADF or a dict
    changed mid-iteration; emptied or evicted the chunk cache between ensure and copy: KeyError).
    The child slows os.close / os.getpid and staggers the threads to widen that window; the reset
    must happen once, at the fork, before any thread reads."""
    import multiprocessing as mp
    import threading
    import time

    T, W, data = _data(120, seed=5)  # ~100 shards per field: the parent holds ~100 fds
    _write(tmp_path / "t.zarr", T, W, data, codec=codec)
    table = open_store(tmp_path / "t.zarr").audio("dev", cache_bytes=0)  # zarr: every chunk is evicted
    lens = table.lengths("frames")
    table.rows_into("frames", np.arange(120), np.empty((int(lens.sum()), D), np.float16))
    report = tmp_path / "child_errors.txt"

    def child() -> None:
        real_close, real_getpid = os.close, os.getpid

        def slow_close(fd: int) -> None:
            time.sleep(0.002)
            real_close(fd)

        def slow_getpid() -> int:
            time.sleep(0.002)
            return real_getpid()

        os.close, os.getpid = slow_close, slow_getpid
        errors: list[str] = []
        start = threading.Barrier(4)

        def read(seed: int) -> None:
            rng = np.random.default_rng(seed)
            try:
                start.wait()
                time.sleep(0.03 * seed)  # staggered: one thread mid-reset when the next arrives
                for _ in range(3):
                    idx = rng.choice(120, size=30, replace=False)
                    got = table.batch("frames", idx)
                    for k, i in enumerate(idx.tolist()):
                        np.testing.assert_array_equal(got.values[k, :T[i]], _want(data, i))
            except BaseException as err:  # noqa: BLE001 - reported to the parent
                errors.append(repr(err))

        threads = [threading.Thread(target=read, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        report.write_text("\n".join(errors))
        os._exit(3 if errors else 0)

    proc = mp.get_context("fork").Process(target=child)
    proc.start()
    proc.join(timeout=60)
    hung = proc.is_alive()
    if hung:
        proc.kill()
        proc.join()
    assert not hung, "the forked child hung"
    assert proc.exitcode == 0, report.read_text()[:2000] if report.exists() else proc.exitcode
