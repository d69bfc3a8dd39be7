"""End-to-end extraction with the tiny encoders on the synthetic corpus.

One uninterrupted single-process store (module fixture) is the reference: the stored features
must equal the encoders' direct output, a 2-process sharded run and a killed-then-resumed run
must give the same arrays and ids, and bad files must be recorded as failures.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from audioret.audio import load_audio, split_windows
from audioret.encoders.registry import build_audio_encoder, build_text_encoder
from audioret.extract import ExtractConfig, run
from audioret.extract.cli import main
from audioret.store import StoreMismatchError, open_store

SPLIT = "val"
# the shared settings: the reference, the sharded and the resumed run must plan the same parts
COMMON = dict(corpus="clotho", splits=(SPLIT,), audio_encoder="tiny-beats", text_model="tiny-roberta",
              items_per_part=2, text_items_per_part=8, batch_windows=4, text_batch_size=8,
              num_workers=0, progress=False)


def _config(corpus: Path, store: Path, **kw) -> ExtractConfig:
    return ExtractConfig(data_path=corpus, store=store, **{**COMMON, **kw})


def _argv(corpus: Path, store: Path, **kw) -> list[str]:
    cfg = {**COMMON, **kw}
    out = ["--data-path", str(corpus), "--store", str(store)]
    for k, v in cfg.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            out.append(flag if v else "--no-" + k.replace("_", "-"))
        elif isinstance(v, tuple):
            out += [flag, *map(str, v)]
        else:
            out += [flag, str(v)]
    return out


@pytest.fixture(scope="module")
def reference(synth_corpus, tmp_path_factory):
    store = tmp_path_factory.mktemp("extract_ref") / "ref.zarr"
    result = run(_config(synth_corpus, store))
    return store, result


def _tables(store: Path):
    st = open_store(store)
    return st.audio(SPLIT), st.text(SPLIT)


def _assert_same_store(a: Path, b: Path, kinds: tuple[str, ...] = ("audio", "text")) -> None:
    for kind in kinds:
        ta, tb = open_store(a).items(SPLIT, kind), open_store(b).items(SPLIT, kind)
        assert ta.ids == tb.ids
        ta.require_complete()
        tb.require_complete()
        for field in ta.fields:
            fa, oa, la = ta.load(field)
            fb, ob, lb = tb.load(field)
            assert np.array_equal(oa, ob) and np.array_equal(la, lb)
            assert np.array_equal(fa, fb), f"{ta.kind}/{field} differs"


def test_stored_features_equal_direct_encoder_output(reference, synth_corpus):
    store, result = reference
    audio, text = _tables(store)
    assert result.num_failed == 0 and {s.kind for s in result.stats} == {"audio", "text"}
    enc = build_audio_encoder("tiny-beats")
    clip_dir = synth_corpus / "CLOTHO_v2.1" / "clotho_audio_files" / "validation"
    assert audio.ids == sorted(audio.ids) or len(audio.ids) == 8
    multi = 0
    for i, clip_id in enumerate(audio.ids):
        wave = load_audio(clip_dir / clip_id, 16000, max_samples=30 * 16000)
        windows = split_windows(wave, enc.window_samples)
        multi += windows.shape[0] > 1
        with torch.inference_mode():
            frames, means = enc.encode_windows(windows)
        valid = [enc.num_valid_frames(min(enc.window_samples, len(wave) - k * enc.window_samples))
                 for k in range(windows.shape[0])]
        direct = torch.cat([frames[k, :v] for k, v in enumerate(valid)]).numpy()
        np.testing.assert_allclose(audio.get("frames", i).astype(np.float32), direct, rtol=2e-3, atol=2e-3)
        np.testing.assert_allclose(audio.get("windows", i).astype(np.float32), means.numpy(), rtol=2e-3, atol=2e-3)
        assert audio.column("duration")[i] == pytest.approx(len(wave) / 16000, abs=1e-4)
    assert multi > 0, "the fixture should hold clips longer than one 10 s window"
    tenc = build_text_encoder("tiny-roberta")
    caps = text.captions
    with torch.inference_mode():
        tokens, mask, first = tenc.encode(caps)
    n = mask.sum(1)
    for j in range(len(caps)):
        np.testing.assert_allclose(text.get("tokens", j).astype(np.float32), tokens[j, : n[j]].numpy(),
                                   rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(text.vectors("first").astype(np.float32), first.numpy(), rtol=2e-3, atol=2e-3)
    assert len(caps) == 5 * len(audio.ids) and (text.column("clip_index") == np.repeat(np.arange(8), 5)).all()
    meta = open_store(store).metadata
    assert meta["preprocessing"]["max_seconds"] == 30.0 and meta["preprocessing"]["crop"] == "start"
    assert meta["audio_encoder"]["name"] == "tiny-beats" and meta["extract_config"]["batch_windows"] == 4


def test_rerun_does_nothing_and_other_encoder_config_is_refused(reference, synth_corpus):
    store, _ = reference
    again = run(_config(synth_corpus, store))
    assert all(s.processed == 0 and s.skipped == s.items for s in again.stats)
    with pytest.raises(StoreMismatchError, match="max_seconds"):
        run(_config(synth_corpus, store, max_seconds=20.0))
    assert main(_argv(synth_corpus, store, crop="end")) == 2  # clear error, non-zero exit


def test_two_processes_sharded_equal_one_process(reference, synth_corpus, tmp_path):
    """Shard 1 in a subprocess (torchrun variables), shard 0 in this process at the same time
    (with 2 DataLoader workers): together they must write the reference store."""
    store = tmp_path / "sharded.zarr"
    proc = subprocess.Popen([sys.executable, "-m", "audioret.extract", *_argv(synth_corpus, store)],
                            env={**os.environ, "RANK": "1", "WORLD_SIZE": "2"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    mine = run(_config(synth_corpus, store, num_workers=2), env={"RANK": "0", "WORLD_SIZE": "2"})
    out = proc.communicate(timeout=240)[0].decode()
    assert proc.returncode == 0, out
    assert "shard 1/2 (torchrun)" in out and mine.shard.index == 0 and mine.shard.count == 2
    audio = next(s for s in mine.stats if s.kind == "audio")
    assert 0 < audio.processed < audio.items  # this shard did only its own parts
    _assert_same_store(reference[0], store)


def test_kill_then_resume_equals_uninterrupted(reference, synth_corpus, tmp_path):
    store = tmp_path / "killed.zarr"
    proc = subprocess.Popen([sys.executable, "-m", "audioret.extract",
                             *_argv(synth_corpus, store, passes=("audio",))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = store / SPLIT / "audio" / "parts"
    deadline = time.monotonic() + 180
    killed_after = None
    while time.monotonic() < deadline and proc.poll() is None:
        done = [p for p in parts.glob("*/zarr.json") if b'"complete": true' in p.read_bytes()] if parts.is_dir() else []
        if done:
            proc.send_signal(signal.SIGKILL)
            killed_after = len(done)
            break
        time.sleep(0.02)
    proc.wait(timeout=30)
    assert killed_after is not None, "the run ended before it could be killed"
    st = open_store(store)
    assert not st.status(SPLIT, "audio").complete  # 4 parts, killed after the first completed
    result = run(_config(synth_corpus, store, passes=("audio",)))
    audio_stats = next(s for s in result.stats if s.kind == "audio")
    assert 0 < audio_stats.processed < audio_stats.items
    _assert_same_store(reference[0], store, kinds=("audio",))


def test_bad_files_are_recorded_and_strict_fails(synth_corpus, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(synth_corpus, corpus)
    clip_dir = corpus / "CLOTHO_v2.1" / "clotho_audio_files" / "validation"
    files = sorted(clip_dir.glob("*.wav"))
    files[1].write_bytes(b"this is not a wav file" * 10)                 # header unreadable
    data = files[4].read_bytes()
    files[4].write_bytes(data[: len(data) // 3])                           # truncated samples
    files[6].unlink()                                                      # missing file
    store = tmp_path / "bad.zarr"
    assert main(_argv(corpus, store, passes=("audio",), strict=True)) == 2  # one line, like every user error
    audio = open_store(store).audio(SPLIT)
    audio.require_complete()
    failed = {audio.ids[i]: reason for i, reason in audio.failures.items()}
    assert set(failed) == {files[1].name, files[4].name, files[6].name}
    assert "truncated" in failed[files[4].name]
    assert files[6].name in failed[files[6].name] or "exist" in failed[files[6].name].lower()
    assert audio.valid.sum() == len(files) - 3
    good = audio.ids.index(files[0].name)
    assert np.abs(audio.get("frames", good)).sum() > 0
    assert main(_argv(corpus, store, passes=("audio",))) == 0  # not strict: recorded, exit 0
    text_only = run(_config(corpus, store, passes=("text",)))   # a later pass joins the same store
    assert [s.kind for s in text_only.stats] == ["text"] and text_only.stats[0].processed == 40
    assert open_store(store).text(SPLIT).plan.attrs["encoder"]["name"] == "tiny-roberta"


def test_missing_corpus_fails_fast_without_creating_a_store(tmp_path, capsys):
    store = tmp_path / "never.zarr"
    assert main(_argv(tmp_path / "no_corpus", store)) == 2
    err = capsys.readouterr().err
    assert "no_corpus" in err and "CLOTHO_v2.1" in err
    assert not store.exists()
