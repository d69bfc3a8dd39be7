"""PaSST through the frozen-feature path: extract -> store -> train-heads -> evaluate (tiny-passt,
synthetic corpus); the store keeps PaSST's frequency-pooled time columns and (CLS + DIST) / 2 per
10 s window, at 32 kHz, and records that."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audioret.encoders import passt as P

SPLITS = ("val", "eval")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("AUDIORET_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def store(cache, synth_corpus, tmp_path_factory):
    from audioret.extract import ExtractConfig, run

    path = tmp_path_factory.mktemp("passt_store") / "store.zarr"
    run(ExtractConfig(corpus="clotho", data_path=synth_corpus, store=path, splits=SPLITS,
                      audio_encoder="tiny-passt", text_model="tiny-roberta", num_workers=0, progress=False,
                      dtype="float32"))
    return path


def test_store_holds_passt_frames_and_pooled_windows(store, synth_corpus):
    from audioret.corpora import load_corpus
    from audioret.encoders.features import load_clip_wave
    from audioret.encoders.registry import build_audio_encoder
    from audioret.store import open_store

    st = open_store(store)
    meta = st.metadata
    pre, ident = meta["preprocessing"], meta["audio_encoder"]
    assert (pre["sample_rate"], pre["window_samples"]) == (32000, 320000)
    assert ident["architecture"] == "passt" and ident["name"] == "tiny-passt"
    assert "CLS + DIST" in pre["pooling"]["windows"] and "s_patchout_t" not in ident["config"]
    enc = build_audio_encoder("tiny-passt")
    table = st.audio("eval")
    clips = {c.clip_id: c for c in load_corpus("clotho", synth_corpus, "eval").clips}
    long_seen = False
    for row, cid in enumerate(table.ids):
        wave = load_clip_wave(clips[cid].path, 32000, 30 * 32000)
        windows = table.batch("windows", [row])
        frames = table.batch("frames", [row])
        n_win = int(windows.mask.sum())
        assert n_win == P.windows_used(len(wave))        # the baseline's duration rule
        long_seen |= n_win > 1
        wins = torch.nn.functional.pad(wave, (0, n_win * P.WINDOW_SAMPLES - len(wave))).reshape(n_win, -1)
        with torch.no_grad():
            fr, pooled = enc.model.encode(wins)               # (CLS + DIST) / 2 and freq-pooled columns
        assert np.abs(windows.values[0, :n_win] - pooled.numpy()).max() < 1e-4
        n_fr = int(frames.mask.sum())
        last = -(-(len(wave) - (n_win - 1) * P.WINDOW_SAMPLES) // 5120)
        assert n_fr == 62 * (n_win - 1) + min(62, last)
        k = min(62, n_fr)                                    # first window's valid columns
        assert np.abs(frames.values[0, :k] - fr[0, :k].numpy()).max() < 1e-4
    assert long_seen


def test_text_only_pass_reopens_a_passt_store(store, synth_corpus):
    from audioret.extract import ExtractConfig, run

    run(ExtractConfig(corpus="clotho", data_path=synth_corpus, store=store, splits=("eval",), passes=("text",),
                      text_model="tiny-roberta", num_workers=0, progress=False, dtype="float32"))


def test_train_heads_on_a_passt_store_and_evaluate_raw_audio(store, synth_corpus, tmp_path):
    from audioret.evaluate.cli import main as evaluate_main
    from audioret.train_heads.config import TrainHeadsConfig
    from audioret.train_heads.run import run

    out = tmp_path / "heads"
    run(TrainHeadsConfig(store=store, train="val", val="eval", test="eval", out=out, max_epochs=2, batch_size=8,
                         accelerator="cpu", precision="32-true", logger="none", progress=False, floor="none"))
    ckpt = out / "heads.pt"
    assert ckpt.is_file()
    ev = tmp_path / "ev"
    assert evaluate_main(["--checkpoint", str(ckpt), "--data-path", str(synth_corpus), "--split", "eval",
                          "--out", str(ev), "--num-workers", "0", "--no-embedding-cache"]) == 0
    raw = json.loads((ev / "metrics.json").read_text())["metrics"]
    ev2 = tmp_path / "ev2"
    assert evaluate_main(["--checkpoint", str(ckpt), "--store", str(store), "--split", "eval",
                          "--out", str(ev2), "--no-embedding-cache"]) == 0
    stored = json.loads((ev2 / "metrics.json").read_text())["metrics"]
    assert raw == pytest.approx(stored, abs=1e-6)        # raw audio recomputes what the store holds


def test_a_moved_passt_file_is_named_with_the_flag_that_points_to_it(tmp_path):
    """Heads trained on a PaSST store whose weights file is not here: the error names the file and
    --audio-checkpoint (extract's flag for that file; --beats-ckpt was the only spelling)."""
    from audioret.evaluate.config import EvaluateConfig, PredictConfig
    from audioret.evaluate.sources import load_heads_model
    from audioret.config import build_parser
    from audioret.models import HeadConfig, RetrievalHeads, save_heads

    gone = tmp_path / "moved" / "passt-s-f128-p16-s16-ap.468.pt"
    meta = {"audio_encoder": {"name": "passt", "architecture": "passt", "checkpoint": str(gone)},
            "text_encoder": {"name": "tiny-roberta"}, "preprocessing": {"sample_rate": 32000}}
    ckpt = save_heads(tmp_path / "heads.pt", RetrievalHeads(HeadConfig(audio_dim=8, text_dim=12, embed_dim=6)),
                      store={"metadata": meta})
    with pytest.raises(FileNotFoundError) as err:
        load_heads_model(ckpt)
    assert str(gone) in str(err.value) and "--audio-checkpoint PATH" in str(err.value)
    for cls, stage in ((EvaluateConfig, "evaluate"), (PredictConfig, "predict")):
        cfg = build_parser(cls, stage).parse_args(["--checkpoint", str(ckpt), "--audio-checkpoint", str(gone)])
        assert str(cfg.beats_ckpt) == str(gone)
