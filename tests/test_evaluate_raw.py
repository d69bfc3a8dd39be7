"""evaluate/predict from raw audio: heads checkpoints (encoders rebuilt from the store identity)
and finetune checkpoints, over a corpus split or a folder + captions CSV (the baseline's input)."""

from __future__ import annotations

import csv
import json
import logging
import shutil

import numpy as np
import pytest
import torch

from audioret.encoders.features import audio_clip_features, load_clip_wave
from audioret.encoders.registry import build_audio_encoder
from audioret.evaluate import metrics as M
from audioret.evaluate.cli import main as evaluate_main
from audioret.evaluate.model import embed_all, load_store_source
from audioret.evaluate.predict import main as predict_main
from audioret.evaluate.sources import (FINETUNE, HEADS, RawItems, RawSource, checkpoint_kind, items_from_corpus,
                                       load_raw_model)
from audioret.extract import ExtractConfig, run as extract_run
from audioret.models import HeadConfig, RetrievalHeads, save_heads
from audioret.store import open_store

SPLIT = "val"


@pytest.fixture(scope="module")
def store(synth_corpus, tmp_path_factory):
    """The val split through the tiny encoders into a float16 store (extract's defaults)."""
    path = tmp_path_factory.mktemp("raw_store") / "store.zarr"
    extract_run(ExtractConfig(corpus="clotho", data_path=synth_corpus, store=path, splits=(SPLIT,),
                              audio_encoder="tiny-beats", text_model="tiny-roberta", batch_windows=4,
                              num_workers=0, progress=False))
    return path


def _heads_ckpt(store_path, out, seed: int, **cfg):
    st = open_store(store_path)
    audio, text = st.audio(SPLIT), st.text(SPLIT)
    torch.manual_seed(seed)
    heads = RetrievalHeads(HeadConfig(audio_dim=audio.get("frames", 0).shape[1],
                                      text_dim=text.get("tokens", 0).shape[1], embed_dim=16, hidden_dim=32, **cfg))
    return save_heads(out, heads.eval(), store={"path": str(store_path), "metadata": st.metadata})


HEAD_KINDS = {"sequence": {"audio_pooling": "mean-std", "text_pooling": "mean"},
              "seed-recipe": {"audio_pooling": "segment-mean", "text_pooling": "first", "projection": "linear"}}


@pytest.fixture(scope="module")
def heads_ckpts(store, tmp_path_factory):
    """Random heads 'trained' on the store: frame/token pooling, or the seed's window/first vectors."""
    return {kind: _heads_ckpt(store, tmp_path_factory.mktemp(kind) / "run" / "heads.pt", 0, **cfg)
            for kind, cfg in HEAD_KINDS.items()}


@pytest.fixture(scope="module")
def finetune_ckpt(tmp_path_factory):
    """A tiny DualEncoder saved in the finetune Lightning layout (state_dict 'model.*' + hyper_parameters)."""
    from audioret.models.dual_encoder import build_dual_encoder

    spec = {"audio_encoder": "tiny-beats", "text_model": "tiny-roberta", "embed_dim": 16, "max_seconds": 30.0}
    torch.manual_seed(1)
    model = build_dual_encoder(spec)
    path = tmp_path_factory.mktemp("ft") / "ft_run" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": spec, "epoch": 0, "global_step": 2}, path)
    return path


def test_shared_clip_features_equal_what_extract_stored(store, synth_corpus):
    st = open_store(store)
    audio, pre = st.audio(SPLIT), st.metadata["preprocessing"]
    enc = build_audio_encoder("tiny-beats")
    folder = synth_corpus / "CLOTHO_v2.1" / "clotho_audio_files" / "validation"
    multi = 0
    lengths = audio.column("num_samples")
    for i in sorted(range(len(audio.ids)), key=lambda k: -int(lengths[k]))[:3]:  # multi-window clips first
        name = audio.ids[i]
        wave = load_clip_wave(folder / name, 16000, pre["max_samples"], pre["crop"])
        feats = audio_clip_features(enc, wave, pre["max_samples"])
        multi += feats.windows.shape[0] > 1
        np.testing.assert_allclose(audio.get("frames", i), feats.frames.half().numpy(), atol=2e-3, rtol=2e-3)
        np.testing.assert_allclose(audio.get("windows", i), feats.windows.half().numpy(), atol=2e-3, rtol=2e-3)
        assert audio.get("frames", i).shape == tuple(feats.frames.shape)
    assert multi > 0, "the corpus should hold clips longer than one 10 s window"


@pytest.mark.parametrize("kind", list(HEAD_KINDS))
def test_raw_audio_embeddings_equal_store_embeddings(kind, heads_ckpts, store, synth_corpus):
    heads_ckpt = heads_ckpts[kind]
    assert checkpoint_kind(heads_ckpt) == HEADS
    ref = load_store_source(heads_ckpt, store, SPLIT)
    full = items_from_corpus("clotho", synth_corpus, SPLIT)
    assert full.audio_fnames == ref.audio_fnames and full.captions == ref.captions
    assert full.caption_fnames == ref.caption_fnames
    # a subset (both multi-window clips + two short ones) keeps the test cheap
    n_samples = open_store(store).audio(SPLIT).column("num_samples")
    clips = sorted(sorted(range(len(full.audio_fnames)), key=lambda k: -int(n_samples[k]))[:4])
    names = [full.audio_fnames[k] for k in clips]
    rows = [j for j, f in enumerate(full.caption_fnames) if f in names]
    items = RawItems(names, [full.audio_paths[k] for k in clips], [full.captions[j] for j in rows],
                     [full.caption_fnames[j] for j in rows])
    raw = RawSource(load_raw_model(heads_ckpt), items, batch_size=3).prepare()
    assert raw.audio_fnames == names and not raw.failures
    for side, ref_rows in (("audio", clips), ("text", rows)):
        want = getattr(ref, f"embed_{side}")(ref_rows)
        got = embed_all(getattr(raw, f"embed_{side}"), len(ref_rows), 5)
        assert torch.allclose(got, want, atol=1e-4), f"{side}: max diff {(got - want).abs().max():.2e}"


def _read(path):
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_predict_folder_with_baseline_flags(heads_ckpts, store, synth_corpus, tmp_path, caplog):
    heads_ckpt = heads_ckpts["sequence"]
    folder = tmp_path / "retrieval_audio"
    folder.mkdir()
    src = synth_corpus / "CLOTHO_v2.1" / "clotho_audio_files" / "validation"
    for p in sorted(src.iterdir())[:4]:
        shutil.copy(p, folder / p.name)
    (folder / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" * 3)
    (folder / "readme.txt").write_text("not audio")
    ref = load_store_source(heads_ckpt, store, SPLIT)
    queries = [ref.captions[0], ref.captions[7], 'a, "quoted" query', ref.captions[0]]  # duplicate collapses
    captions = tmp_path / "retrieval_captions.csv"
    with captions.open("w", newline="") as f:
        csv.writer(f).writerows([["caption"], *([q] for q in queries)])
    out = tmp_path / "preds"
    argv = ["--load_ckpt_path", str(heads_ckpt), "--retrieval_audio_path", str(folder),
            "--retrieval_captions", str(captions), "--predictions_path", str(out), "--top-k", "3",
            "--num-workers", "0"]
    with caplog.at_level(logging.INFO, logger="audioret.evaluate.predict"):
        assert predict_main(argv) == 0
    name = "run"  # the checkpoint's parent folder, as the baseline names it
    assert sorted(p.name for p in out.iterdir()) == ["embeddings", f"{name}.csv", f"{name}_skipped.csv",
                                                     f"{name}_source.json", f"{name}_top3.csv"]
    assert "3 caption rows x 4 audio files; 1 audio file skipped" in caplog.text  # the repeated query: once
    record = json.loads((out / f"{name}_source.json").read_text())
    assert record["counts"] == {"rows": 3, "captions": 3, "audios": 4, "skipped_audios": 1}
    assert record["audio_dir"] == str(folder.resolve()) and record["corpus"] is None
    matrix = _read(out / f"{name}.csv")
    audio_names = sorted(p.name for p in folder.iterdir() if p.suffix == ".wav" and p.name != "broken.wav")
    assert matrix[0] == ["index", *audio_names]
    assert [r[0] for r in matrix[1:]] == list(dict.fromkeys(queries))
    scores = np.array([[float(x) for x in r[1:]] for r in matrix[1:]])
    # the same captions x audios scored from the store features
    text = embed_all(ref.embed_text, len(ref.captions), 8)
    audio = embed_all(ref.embed_audio, len(ref.audio_fnames), 8)
    cols = [ref.audio_fnames.index(a) for a in audio_names]
    for r, q in enumerate(dict.fromkeys(queries)):
        if q in ref.captions:
            want = (text[ref.captions.index(q)] @ audio[cols].T).numpy()
            np.testing.assert_allclose(scores[r], want, atol=1e-4)
    ranked = _read(out / f"{name}_top3.csv")
    assert ranked[0] == ["caption", "fname_1", "fname_2", "fname_3"]
    for row, srow in zip(ranked[1:], scores):
        assert row[1:] == [audio_names[j] for j in np.argsort(-srow, kind="stable")[:3]]
    skipped = _read(out / f"{name}_skipped.csv")
    assert skipped[0] == ["file_name", "reason"] and [r[0] for r in skipped[1:]] == ["broken.wav"]
    assert skipped[1][1]  # the decoder's reason is kept
    # fixed folder, same run name: the stale skipped list goes away
    (folder / "broken.wav").unlink()
    assert predict_main(argv) == 0
    assert not (out / f"{name}_skipped.csv").exists() and not list(out.glob(".*tmp"))


def test_evaluate_finetune_checkpoint_on_a_corpus(finetune_ckpt, synth_corpus, tmp_path):
    from audioret.audio import load_audio
    from audioret.corpora import load_corpus
    from audioret.models.dual_encoder import load_finetuned

    assert checkpoint_kind(finetune_ckpt) == FINETUNE
    out = tmp_path / "ev"
    assert evaluate_main(["--checkpoint", str(finetune_ckpt), "--data-path", str(synth_corpus),
                          "--corpus", "clotho", "--split", SPLIT, "--out", str(out),
                          "--num-workers", "0", "--batch-size", "5"]) == 0
    got = json.loads((out / "metrics.json").read_text())["metrics"]
    # the same numbers straight from the model
    model = load_finetuned(finetune_ckpt)
    clips = load_corpus("clotho", synth_corpus, SPLIT).clips
    names = [c.clip_id for c in clips]
    captions = [cap for c in clips for cap in c.captions]
    with torch.inference_mode():
        audio = model.embed_audio([load_audio(c.path, 16000, max_samples=model.max_samples) for c in clips])
        text = model.embed_text(captions)
    targets = [i for i, c in enumerate(clips) for _ in c.captions]
    want = M.retrieval_metrics(text, audio, targets)  # single match: each caption's own clip
    assert got == pytest.approx(want, abs=1e-6)
    assert set(got) == {"R@1", "R@5", "R@10", "mAP@10"}


def test_unknown_checkpoint_and_bad_flag_sets_fail_clearly(tmp_path, synth_corpus, finetune_ckpt, store, capsys):
    bad = tmp_path / "weights.pt"
    torch.save({"weights": torch.zeros(2)}, bad)
    assert evaluate_main(["--checkpoint", str(bad), "--data-path", str(synth_corpus)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "neither" in err
    assert evaluate_main(["--checkpoint", str(finetune_ckpt), "--store", str(store), "--split", SPLIT]) == 2
    assert "--data-path" in capsys.readouterr().err
    assert predict_main(["--checkpoint", str(finetune_ckpt), "--audio-dir", str(tmp_path)]) == 2
    assert "--captions" in capsys.readouterr().err
