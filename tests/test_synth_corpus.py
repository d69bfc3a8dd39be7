"""The synthetic corpus: Clotho layout read back through aac-datasets, multi-match, determinism,
audibility of the captioned attributes."""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioret.corpora import CorpusError, load_corpus, multi_match_annotations_path, synthesize
from audioret.corpora.synth import SPLIT_DIRS, SynthConfig, attributes_path, plan_split
from audioret.corpora.synth_captions import satisfies

SIZES = {"dev": 16, "val": 6, "eval": 24}


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    return synthesize(root, n_dev=SIZES["dev"], n_val=SIZES["val"], n_eval=SIZES["eval"], seed=3,
                      long_fraction=0.25)


def _config(root: Path) -> SynthConfig:
    return SynthConfig(out=root, n_dev=SIZES["dev"], n_val=SIZES["val"], n_eval=SIZES["eval"], seed=3,
                       long_fraction=0.25)


@pytest.mark.parametrize("split", ["dev", "val", "eval"])
def test_clotho_adapter_round_trips_every_caption_and_duration(synth_root, split):
    planned = plan_split(_config(synth_root), split, SIZES[split])
    corpus = load_corpus("clotho", synth_root, split)
    assert [c.clip_id for c in corpus.clips] == [p.file_name for p in planned]
    for clip, plan in zip(corpus.clips, planned):
        assert clip.captions == tuple(text for text, _ in plan.captions)
        assert len(set(clip.captions)) == 5
        assert clip.split == split and clip.dataset == "clotho"
        assert clip.path.parent.name == SPLIT_DIRS[split] and clip.path.is_file()
        assert clip.duration == pytest.approx(plan.duration, abs=1.0 / 44_100)
        assert sf.info(str(clip.path)).samplerate == 44_100
    assert corpus.removed == {}


def test_aac_datasets_clotho_class_reads_it_unchanged(synth_root):
    from audioret.corpora import import_aac_datasets

    aac = import_aac_datasets()
    for split in ("dev", "eval"):
        ds = aac.Clotho(root=str(synth_root), subset=split)
        ours = load_corpus("clotho", synth_root, split, durations=False)
        assert len(ds) == SIZES[split]
        assert ds[:, "fname"] == [c.clip_id for c in ours.clips]
        assert [tuple(c) for c in ds[:, "captions"]] == [c.captions for c in ours.clips]


def test_some_clips_are_longer_than_ten_seconds(synth_root):
    durations = [c.duration for s in SIZES for c in load_corpus("clotho", synth_root, s).clips]
    assert any(d > 10 for d in durations) and any(d < 8 for d in durations)


def test_odd_file_names_like_real_clotho(synth_root):
    names = [c.clip_id for c in load_corpus("clotho", synth_root, "eval", durations=False).clips]
    assert any("," in n for n in names) and any("&#39;" in n for n in names) and any("&amp;" in n for n in names)


def test_multi_match_annotations_official_format_and_relevance(synth_root):
    attrs = json.loads(attributes_path(synth_root).read_text())["eval"]
    eval_clips = load_corpus("clotho", synth_root, "eval", durations=False).clips
    captions = {text for c in eval_clips for text in c.captions}
    planned = {text: (p.attrs, stated) for p in plan_split(_config(synth_root), "eval", SIZES["eval"])
               for text, stated in p.captions}
    path = multi_match_annotations_path(synth_root)
    raw = path.read_text()
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["query", "audio_filenames"]
    assert len(rows) == len(captions) and {r["query"] for r in rows} == captions
    assert '"[\'' in raw or ",['" in raw  # Python-literal lists with single quotes
    sizes = []
    for row in rows:
        files = ast.literal_eval(row["audio_filenames"])
        own_attrs, stated = planned[row["query"]]
        required = {k: own_attrs[k] for k in stated}
        assert sorted(files) == sorted(n for n, a in attrs.items() if satisfies(a, required))
        sizes.append(len(files))
    assert min(sizes) >= 1 and max(sizes) > 1  # multi-match really happens


def test_deterministic_given_seed_and_seed_changes_audio(tmp_path):
    kw = dict(n_dev=3, n_val=1, n_eval=4, max_duration=3.0)
    synth_root = synthesize(tmp_path / "first", seed=3, **kw)
    again = synthesize(tmp_path / "a", seed=3, **kw)
    other = synthesize(tmp_path / "b", seed=4, **kw)
    rel = Path("CLOTHO_v2.1/clotho_csv_files/clotho_captions_development.csv")
    wav = Path("CLOTHO_v2.1/clotho_audio_files/development/synth_dev_0000.wav")
    for r in (rel, wav, Path("metadata_eval.csv")):
        assert (again / r).read_bytes() == (synth_root / r).read_bytes()
    assert (other / rel).read_bytes() != (synth_root / rel).read_bytes()


def test_growing_a_split_keeps_earlier_clips(tmp_path, synth_root):
    bigger = plan_split(_config(synth_root), "dev", SIZES["dev"] + 5)
    assert bigger[: SIZES["dev"]] == plan_split(_config(synth_root), "dev", SIZES["dev"])


def _features(path: Path) -> tuple[float, float]:
    """(dominant frequency above 40 Hz ignoring the 50/100 Hz background hum, late/early RMS ratio)."""
    x, sr = sf.read(str(path), dtype="float64")
    nfft = 1 << (len(x) - 1).bit_length()
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), nfft))
    f = np.fft.rfftfreq(nfft, 1 / sr)
    spec[(f < 40) | (np.abs(f - 50) < 3) | (np.abs(f - 100) < 3)] = 0
    q = len(x) // 4
    rms = lambda a: float(np.sqrt(np.mean(a ** 2)) + 1e-9)  # noqa: E731
    return float(f[np.argmax(spec)]), rms(x[-q:]) / rms(x[:q])


def test_captioned_attributes_are_audible(synth_root):
    """Pitch and loudness direction read off the waveform by fixed rules match the captions far
    above chance (a learnable corpus, not label noise)."""
    attrs = json.loads(attributes_path(synth_root).read_text())
    pitch_hits = loud_hits = loud_total = total = 0
    for split in SIZES:
        for clip in load_corpus("clotho", synth_root, split, durations=False).clips:
            a = attrs[split][clip.clip_id]
            peak, ratio = _features(clip.path)
            threshold = 200.0 if a["source"] == "hum" else 700.0
            pitch_hits += (peak > threshold) == (a["pitch"] == "high")
            total += 1
            if a["loudness"] != "steady" and a["events"] == "repeating":
                loud_total += 1
                loud_hits += (ratio > 1) == (a["loudness"] == "rising")
    assert pitch_hits / total > 0.85
    assert loud_total == 0 or loud_hits / loud_total > 0.8


def test_refuses_to_overwrite_unless_asked_and_only_its_own_corpus(tmp_path):
    root = synthesize(tmp_path / "c", n_dev=2, n_val=1, n_eval=2)
    with pytest.raises(CorpusError, match="overwrite"):
        synthesize(root, n_dev=2, n_val=1, n_eval=2)
    synthesize(root, n_dev=3, n_val=1, n_eval=2, overwrite=True)
    assert len(load_corpus("clotho", root, "dev")) == 3
    foreign = tmp_path / "real"
    (foreign / "CLOTHO_v2.1").mkdir(parents=True)
    with pytest.raises(CorpusError, match="left alone"):
        synthesize(foreign, n_dev=2, n_val=1, n_eval=2, overwrite=True)
    assert (foreign / "CLOTHO_v2.1").is_dir()


def test_cli_synth_and_list(tmp_path, capsys):
    from audioret.cli import main

    out = tmp_path / "cli"
    assert main(["corpus", "synth", "--out", str(out), "--n-dev", "3", "--n-val", "2", "--n-eval", "2"]) == 0
    assert main(["corpus", "list", "--data-path", str(out), "--split", "val"]) == 0
    text = capsys.readouterr().out
    assert "clips" in text and "captions" in text and "10" in text
    assert main(["corpus", "list", "--data-path", str(tmp_path / "absent"), "--split", "val"]) == 2  # a user error: one line, exit 2
    assert "clotho_captions_validation.csv" in capsys.readouterr().err
