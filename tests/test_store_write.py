"""Concurrent writer processes, kill -9 and resume, metadata/plan mismatches."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from audioret.store import FORMAT_VERSION, StoreMismatchError, create_store, open_store, verify_store

# Run as a separate process: plan (identically in every process) and write the given parts.
WRITER = r'''
import sys, time
import numpy as np
from audioret.store import create_store

N, D = 60, 12

def layout():
    rng = np.random.default_rng(123)
    return [f"c{i}.wav" for i in range(N)], rng.integers(5, 50, N), rng.integers(1, 4, N)

def item(i, T, W):
    rng = np.random.default_rng(1000 + i)
    return rng.standard_normal((T, D)).astype(np.float16), rng.standard_normal((W, D)).astype(np.float16)

def write(path, parts, delay=0.0):
    ids, T, W = layout()
    st = create_store(path, {"audio_encoder": {"name": "tiny-beats", "sha256": "ab"}})
    plan = st.plan_audio("dev", ids, T, W, dim=D, num_parts=4, chunk_rows=8, shard_chunks=2)
    for p in parts:
        with st.writer("dev", "audio", p, flush_bytes=2000, background=True) as w:
            for i in w.pending():
                if i == 13:
                    w.fail(i, "undecodable: truncated header")
                    continue
                f, win = item(i, T[i], W[i])
                w.put(i, frames=f, windows=win)
                if delay:
                    print(i, flush=True)  # the crash test kills after reading a given count
                    time.sleep(delay)

if __name__ == "__main__":
    write(sys.argv[1], [int(p) for p in sys.argv[2].split(",")], float(sys.argv[3]))
'''


@pytest.fixture()
def writer_script(tmp_path) -> Path:
    path = tmp_path / "writer.py"
    path.write_text(WRITER)
    return path


def _ns() -> dict:
    ns: dict = {}
    exec(WRITER.replace('if __name__ == "__main__":', "if False:"), ns)
    return ns


def _run(script: Path, store: Path, parts: str, delay: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), str(store), parts, str(delay)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _check_complete(store: Path) -> None:
    ns = _ns()
    ids, T, W = ns["layout"]()
    t = open_store(store).audio("dev")
    assert t.status.complete and t.failures == {13: "undecodable: truncated header"}
    for i in range(len(ids)):
        f, win = ns["item"](i, T[i], W[i])
        if i == 13:
            f, win = np.zeros_like(f), np.zeros_like(win)
        np.testing.assert_array_equal(t.get("frames", i), f)
        np.testing.assert_array_equal(t.get("windows", i), win)
    assert verify_store(store) == []


def test_two_writer_processes_one_store(tmp_path, writer_script):
    store = tmp_path / "s.zarr"
    procs = [_run(writer_script, store, "0,2"), _run(writer_script, store, "1,3")]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    _check_complete(store)


def _data_files(store: Path) -> dict[str, bytes]:
    root = store / "dev" / "audio"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "/data/c/" in str(p)}


def test_kill_9_then_resume_gives_identical_store(tmp_path, writer_script):
    clean = tmp_path / "clean.zarr"
    _ns()["write"](str(clean), [0, 1, 2, 3])
    store = tmp_path / "s.zarr"
    for kill_after in (23, 17):  # two crashes mid-part (puts seen), then a full resume
        p = _run(writer_script, store, "0,1,2,3", delay=0.002)
        for _ in range(kill_after):
            assert p.stdout.readline(), p.stderr.read()
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert p.returncode == -signal.SIGKILL
        st = open_store(store)  # reopens, reports progress
        status = st.status("dev", "audio")
        assert not status.complete and status.items_done < 60
    assert status.items_done > 0, "killed before any flush: raise kill_after"
    assert any("incomplete" in x for x in verify_store(store))
    p = _run(writer_script, store, "0,1,2,3")
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    _check_complete(store)
    assert _data_files(store) == _data_files(clean)  # byte-identical shard files


def test_recreate_with_other_metadata_refuses(tmp_path):
    path = tmp_path / "s"
    md = {"audio_encoder": {"name": "beats", "sha256": "aa"}, "preprocessing": {"sample_rate": 16000}}
    create_store(path, md)
    create_store(path, md)  # same metadata: reopens
    other = {"audio_encoder": {"name": "beats", "sha256": "bb"}, "preprocessing": {"sample_rate": 32000}}
    with pytest.raises(StoreMismatchError) as e:
        create_store(path, other)
    assert set(e.value.differences) == {"audio_encoder.sha256", "preprocessing.sample_rate"}
    assert "'aa'" in str(e.value) and "'bb'" in str(e.value) and "16000" in str(e.value)
    st = create_store(path, other, overwrite=True)
    assert st.metadata["audio_encoder"]["sha256"] == "bb" and st.metadata["format_version"] == FORMAT_VERSION == 2


def test_open_with_expectations(tmp_path):
    path = tmp_path / "s"
    create_store(path, {"audio_encoder": {"name": "beats", "config": {"dim": 768}}, "corpus": {"name": "clotho"}})
    assert open_store(path, expect={"audio_encoder": {"name": "beats"}}).metadata["corpus"]["name"] == "clotho"
    with pytest.raises(StoreMismatchError) as e:
        open_store(path, expect={"audio_encoder": {"name": "tiny-beats", "config": {"dim": 768}},
                                 "text_encoder": {"name": "roberta-large"}})
    assert set(e.value.differences) == {"audio_encoder.name", "text_encoder.name"}
    assert e.value.differences["audio_encoder.name"] == ("beats", "tiny-beats")


def test_replanning_other_corpus_refuses(tmp_path):
    st = create_store(tmp_path / "s", {"x": 1})
    ids = ["a.wav", "b.wav"]
    p1 = st.plan_audio("dev", ids, [3, 4], [1, 1], dim=4, chunk_rows=2, shard_chunks=2)
    assert st.plan_audio("dev", ids, [3, 4], [1, 1], dim=4, chunk_rows=2, shard_chunks=2) == p1
    with pytest.raises(StoreMismatchError, match="digest"):
        st.plan_audio("dev", ids, [3, 5], [1, 1], dim=4, chunk_rows=2, shard_chunks=2)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_all_finite_by_exponent_bits(dtype):
    from audioret.store.writer import all_finite

    x = np.random.default_rng(0).standard_normal((50, 7)).astype(dtype)
    x[0, :2] = np.finfo(dtype).max, -np.finfo(dtype).max  # largest finite values pass
    assert all_finite(x) and all_finite(x[:, ::2]) and all_finite(x[:0])
    for bad in (np.inf, -np.inf, np.nan):
        y = x.copy()
        y[31, 4] = bad
        assert not all_finite(y) and not all_finite(y[:, 3:])
