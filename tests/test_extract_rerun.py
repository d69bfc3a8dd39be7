"""Reruns of ``extract`` keep nothing stale: damaged shards are found and their parts rewritten,
stray ``.partial`` files removed, fixed files retried, changed sources re-extracted; values
afterwards equal an uninterrupted extraction of the same corpus."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioret.extract import ExtractConfig, run
from audioret.extract.cli import main
from audioret.store import open_store, verify_store

SPLIT = "val"
COMMON = dict(corpus="clotho", splits=(SPLIT,), audio_encoder="tiny-beats", text_model="tiny-roberta",
              items_per_part=2, text_items_per_part=8, batch_windows=4, text_batch_size=8,
              num_workers=0, progress=False)


def _config(corpus: Path, store: Path, **kw) -> ExtractConfig:
    return ExtractConfig(data_path=corpus, store=store, **{**COMMON, **kw})


def _argv(corpus: Path, store: Path, *extra: str) -> list[str]:
    return ["--data-path", str(corpus), "--store", str(store), "--corpus", "clotho", "--splits", SPLIT,
            "--audio-encoder", "tiny-beats", "--text-model", "tiny-roberta", "--items-per-part", "2",
            "--text-items-per-part", "8", "--batch-windows", "4", "--text-batch-size", "8",
            "--num-workers", "0", "--no-progress", *extra]


@pytest.fixture(scope="module")
def reference(synth_corpus, tmp_path_factory):
    store = tmp_path_factory.mktemp("rerun_ref") / "ref.zarr"
    run(_config(synth_corpus, store))
    return store


def _same(a: Path, b: Path, kinds: tuple[str, ...] = ("audio", "text")) -> None:
    for kind in kinds:
        ta, tb = open_store(a).items(SPLIT, kind), open_store(b).items(SPLIT, kind)
        assert ta.ids == tb.ids
        tb.require_complete()
        assert tb.failures == ta.failures
        for field in ta.fields:
            fa, oa, la = ta.load(field)
            fb, ob, lb = tb.load(field)
            assert np.array_equal(oa, ob) and np.array_equal(la, lb)
            assert np.array_equal(fa, fb), f"{kind}/{field} differs"


def _copy(reference: Path, tmp_path: Path) -> Path:
    store = tmp_path / "copy.zarr"
    shutil.copytree(reference, store)
    return store


def _corpus(synth_corpus: Path, tmp_path: Path) -> tuple[Path, list[Path]]:
    corpus = tmp_path / "corpus"
    shutil.copytree(synth_corpus, corpus)
    return corpus, sorted((corpus / "CLOTHO_v2.1" / "clotho_audio_files" / "validation").glob("*.wav"))


@pytest.mark.parametrize("how", ["deleted", "truncated", "overwritten"])
@pytest.mark.parametrize("field", ["frames", "tokens"])
def test_damaged_shard_is_found_and_rewritten(reference, synth_corpus, tmp_path, how, field):
    store = _copy(reference, tmp_path)
    kind = "audio" if field == "frames" else "text"
    shard = sorted((store / SPLIT / kind / field / "data" / "c").rglob("*"))[-1]
    if how == "deleted":
        shard.unlink()
    elif how == "truncated":
        shard.write_bytes(shard.read_bytes()[:-7])
    else:  # finite garbage of the same size: reads as plausible wrong numbers
        data = bytearray(shard.read_bytes())
        data[:32] = np.full(16, 0.25, np.float16).tobytes()
        shard.write_bytes(bytes(data))
    key = str(shard.relative_to(store))
    assert any(p.startswith(f"{key}:") for p in verify_store(store))
    result = run(_config(synth_corpus, store, passes=(kind,)))
    assert result.reruns[f"{SPLIT}/{kind}"].damaged_parts
    assert verify_store(store) == []
    _same(reference, store)


def test_stray_partial_is_reported_then_removed(reference, synth_corpus, tmp_path):
    store = _copy(reference, tmp_path)
    stray = store / SPLIT / "audio" / "frames" / "data" / "c" / "0" / "0.3f2a9c.partial"
    stray.write_bytes(b"half a shard")
    young = stray.with_name("1.77aa00.partial")
    young.write_bytes(b"maybe another writer's file in flight")
    os.utime(stray, (time.time() - 3600, time.time() - 3600))   # left by a run killed an hour ago
    assert any("0.3f2a9c.partial: stray temp file" in p for p in verify_store(store))
    assert run(_config(synth_corpus, store, passes=("audio",))).reruns[f"{SPLIT}/audio"].partials_removed == 1
    assert not stray.exists() and young.exists()
    young.unlink()
    assert verify_store(store) == []


@pytest.mark.parametrize("lost", ["frames/data/zarr.json", "ids/zarr.json", "frames/offsets/c/0", "zarr.json"])
def test_lost_table_metadata_is_rebuilt(reference, synth_corpus, tmp_path, lost):
    store = _copy(reference, tmp_path)
    (store / SPLIT / "audio" / lost).unlink()
    assert verify_store(store)
    run(_config(synth_corpus, store, passes=("audio",)))
    assert verify_store(store) == []
    _same(reference, store)


def test_lost_table_metadata_in_a_sharded_run_is_one_line(reference, synth_corpus, tmp_path, capsys):
    store = _copy(reference, tmp_path)
    (store / SPLIT / "audio" / "frames" / "data" / "zarr.json").unlink()
    assert main(_argv(synth_corpus, store, "--num-shards", "2", "--shard-index", "0")) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert len(err) == 1 and "frames/data/zarr.json" in err[0] and "as one shard" in err[0]


def test_fixed_missing_and_broken_files_are_retried(reference, synth_corpus, tmp_path, capsys):
    corpus, files = _corpus(synth_corpus, tmp_path)
    missing, broken = files[6], files[3]
    keep_missing, keep_broken = missing.read_bytes(), broken.read_bytes()
    missing.unlink()                                        # fails at planning (no header)
    broken.write_bytes(keep_broken[: len(keep_broken) // 3])  # header fine, samples truncated: fails at decode
    store = tmp_path / "s.zarr"
    assert main(_argv(corpus, store, "--passes", "audio", "--strict")) == 2
    capsys.readouterr()
    # nothing changed: the rerun extracts nothing new but --strict still fails, with one line
    assert main(_argv(corpus, store, "--passes", "audio", "--strict")) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1 and "2 item(s) failed" in err[0] and missing.name in err[0]
    missing.write_bytes(keep_missing)
    broken.write_bytes(keep_broken)
    result = run(_config(corpus, store, passes=("audio",)))
    assert result.num_failed == 0 and result.exit_code(True) == 0
    assert open_store(store).audio(SPLIT).failures == {}
    _same(reference, store, kinds=("audio",))


def test_a_rerun_retries_failures_and_says_so(synth_corpus, tmp_path):
    corpus, files = _corpus(synth_corpus, tmp_path)
    files[3].write_bytes(files[3].read_bytes()[:5000])
    store = tmp_path / "s.zarr"
    run(_config(corpus, store, passes=("audio",)))
    again = run(_config(corpus, store, passes=("audio",)))
    rerun = again.reruns[f"{SPLIT}/audio"]
    assert rerun.retried_items == 1 and again.num_failed == 1
    from audioret.extract.pipeline import rerun_lines

    assert any("retried 1 failed item(s), 1 still failed" in line for line in rerun_lines(again))


def _rewrite(path: Path, scale: float) -> None:
    data, rate = sf.read(path, dtype="float32")
    info = sf.info(path)
    sf.write(path, data * scale, rate, subtype=info.subtype)


def test_changed_source_is_re_extracted(reference, synth_corpus, tmp_path):
    corpus, files = _corpus(synth_corpus, tmp_path)
    store = tmp_path / "s.zarr"
    run(_config(corpus, store, passes=("audio",)))
    parts = open_store(store).status(SPLIT, "audio").parts
    assert all(len(p.notes) == p.end - p.start for p in parts)   # [size, mtime_ns] per item
    _rewrite(files[2], 0.5)                  # same name and length, other audio
    result = run(_config(corpus, store, passes=("audio",)))
    assert result.reruns[f"{SPLIT}/audio"].changed_items == 1
    fresh = tmp_path / "fresh.zarr"
    run(_config(corpus, fresh, passes=("audio",)))
    _same(fresh, store, kinds=("audio",))
    with pytest.raises(AssertionError):
        _same(reference, store, kinds=("audio",))


def test_source_of_another_length_replans_the_table(synth_corpus, tmp_path):
    corpus, files = _corpus(synth_corpus, tmp_path)
    store = tmp_path / "s.zarr"
    run(_config(corpus, store, passes=("audio",)))
    data, rate = sf.read(files[2], dtype="float32")
    sf.write(files[2], data[: len(data) // 2], rate)
    result = run(_config(corpus, store, passes=("audio",)))
    assert "changed length" in (result.reruns[f"{SPLIT}/audio"].replanned or "")
    fresh = tmp_path / "fresh.zarr"
    run(_config(corpus, fresh, passes=("audio",)))
    _same(fresh, store, kinds=("audio",))
