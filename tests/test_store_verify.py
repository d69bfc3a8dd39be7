"""``audioret store info`` / ``verify`` on intact and damaged stores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audioret.store import create_store, open_store, summarize, verify_store
from audioret.store.cli import main

D = 8


@pytest.fixture()
def store(tmp_path):
    rng = np.random.default_rng(0)
    n = 30
    T, W = rng.integers(1, 40, n), rng.integers(1, 4, n)
    st = create_store(tmp_path / "s.zarr", {"audio_encoder": {"name": "tiny-beats", "sha256": "cafe"}})
    st.plan_audio("dev", [f"c{i}.wav" for i in range(n)], T, W, dim=D, num_parts=2, chunk_rows=8, shard_chunks=2)
    for p in range(2):
        with st.writer("dev", "audio", p) as w:
            for i in w.pending():
                if i == 4:
                    w.fail(i, "undecodable")
                else:
                    w.put(i, frames=rng.standard_normal((T[i], D)), windows=rng.standard_normal((W[i], D)))
    return tmp_path / "s.zarr"


def test_intact_store_verifies_and_summarises(store, capsys):
    assert verify_store(store) == []
    assert main(["verify", str(store)]) == 0
    assert "OK" in capsys.readouterr().out
    s = summarize(store)
    audio = s["splits"]["dev"]["audio"]
    assert audio["items"] == 30 and audio["complete"] and audio["failures"] == {"4": "undecodable"}
    assert s["metadata"]["audio_encoder"]["sha256"] == "cafe"
    assert main(["info", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["splits"]["dev"]["audio"]["failed"] == 1
    assert main(["info", str(store)]) == 0
    assert "undecodable" in capsys.readouterr().out


def test_verify_catches_corrupt_shard(store, capsys):
    shard = sorted((store / "dev" / "audio" / "frames" / "data" / "c").rglob("*"))[-1]
    assert shard.is_file()
    shard.write_bytes(shard.read_bytes()[: -40])  # truncated: the shard index at the end is gone
    problems = verify_store(store)
    assert any("frames" in p and ("decod" in p or "non-finite" in p) for p in problems), problems
    assert main(["verify", str(store)]) == 1
    assert "PROBLEM" in capsys.readouterr().out


def test_verify_catches_nan_and_changed_lengths(store):
    st = open_store(store, mode="r+")
    g = st.group["dev/audio"]
    off = int(g["frames/offsets"][10])
    g["frames/data"][off] = np.full(D, np.nan, dtype=np.float16)
    assert any("non-finite" in p for p in verify_store(store))
    g["frames/lengths"][3] = int(g["frames/lengths"][3]) + 1
    assert any("digest" in p for p in verify_store(store))


def test_verify_reports_incomplete_and_missing(store, tmp_path):
    open_store(store, mode="r+").records("dev", "audio").delete_part(1)
    problems = verify_store(store)
    assert any("part 1" in p and "incomplete" in p for p in problems), problems
    assert verify_store(store, require_complete=False) == []
    assert main(["verify", str(tmp_path / "nothing")]) == 2
