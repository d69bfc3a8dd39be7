"""DCASE exclusions (pure + WavCaps adapter on a fake aac-datasets layout), AudioCaps, folder
corpus, missing-file reports."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioret.corpora import CorpusError, corpus_names, load_corpus, synthesize
from audioret.corpora.exclusion import (BROKEN_AUDIOSET_STEMS, exclude_by_stem, excluded_freesound_ids,
                                        file_stem)


def _tone(path: Path, seconds: float = 0.5, sr: int = 16_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), (0.1 * np.sin(np.arange(int(seconds * sr)) / 5)).astype(np.float32), sr)
    return path


def test_file_stem_is_text_before_first_dot():
    assert file_stem("354184.flac") == "354184"
    assert file_stem("a/b/Y06-g5jz-OGc.wav.flac") == "Y06-g5jz-OGc"
    assert file_stem("Not found.mp3") == "Not found"


def test_shipped_exclusion_list_is_read_as_strings_with_not_found_row():
    ids = excluded_freesound_ids()
    assert len(ids) == 3080 and "Not found" in ids and "354184" in ids
    assert all(isinstance(i, str) for i in ids)


def test_exclude_by_stem_counts_removed():
    names = ["354184.flac", "1.flac", "Not found.flac", "dir/265492.mp3", "0354184.flac"]
    kept, removed = exclude_by_stem(names, names, excluded_freesound_ids())
    assert kept == ["1.flac", "0354184.flac"] and removed == 3  # "0354184" != "354184" as strings


def _fake_wavcaps(root: Path, source: str, json_name: str, ids: list[str], audio_dir: Path, ext: str) -> None:
    items = [{"id": i, "caption": f"caption of {i}", "duration": 0.5} for i in ids]
    json_path = root / "WavCaps" / "json_files" / source / json_name
    json_path.parent.mkdir(parents=True)
    json_path.write_text(json.dumps({"num_captions_per_audio": 1, "data": items}))
    for i in ids:
        stem = i.replace(".wav", "")
        _tone(audio_dir / f"{stem}.{ext}")


def test_wavcaps_freesound_adapter_applies_exclusions(tmp_path):
    ids = ["354184", "265492", "Not found", "1", "2"]
    _fake_wavcaps(tmp_path, "FreeSound", "fsd_final.json", ids, tmp_path / "WavCaps/Audio/FreeSound", "flac")
    corpus = load_corpus("wavcaps-freesound", tmp_path, "train")
    assert [c.clip_id for c in corpus.clips] == ["1.flac", "2.flac"]
    assert corpus.removed == {"dcase2025_excluded_freesound_ids": 3}
    assert corpus.clips[0].captions == ("caption of 1",) and corpus.clips[0].duration == 0.5


def test_wavcaps_audioset_drops_broken_files_and_reads_baseline_mp3_tree(tmp_path):
    broken = sorted(BROKEN_AUDIOSET_STEMS)[:2]
    ids = [f"{s}.wav" for s in broken + ["Yabc", "Ydef"]]
    _fake_wavcaps(tmp_path, "AudioSet_SL", "as_final.json", ids, tmp_path / "WavCaps_mp3/Audio/AudioSet_SL", "mp3")
    corpus = load_corpus("wavcaps-audioset", tmp_path, "train")
    assert [c.clip_id for c in corpus.clips] == ["Yabc.flac", "Ydef.flac"]  # aac-datasets fname
    assert [c.path.name for c in corpus.clips] == ["Yabc.mp3", "Ydef.mp3"]
    assert corpus.removed == {"broken_audioset_files": 2}


def test_wavcaps_missing_audio_is_one_clear_error_or_counted(tmp_path):
    audio = tmp_path / "WavCaps/Audio/BBC_Sound_Effects"
    _fake_wavcaps(tmp_path, "BBC_Sound_Effects", "bbc_final.json", ["a", "b", "c"], audio, "flac")
    (audio / "b.flac").unlink()
    with pytest.raises(CorpusError) as info:
        load_corpus("wavcaps-bbc", tmp_path, "train")
    assert "1 of 3 audio files are missing" in str(info.value) and "b.flac" in str(info.value)
    corpus = load_corpus("wavcaps-bbc", tmp_path, "train", allow_missing=True)
    assert len(corpus) == 2 and corpus.removed == {"missing_audio": 1}
    with pytest.raises(CorpusError, match="json"):
        load_corpus("wavcaps-soundbible", tmp_path, "train")


def test_audiocaps_adapter_skips_clips_not_on_disk(tmp_path):
    root = tmp_path / "AUDIOCAPS"
    (root / "csv_files_v1").mkdir(parents=True)
    with (root / "csv_files_v1" / "train.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["audiocap_id", "youtube_id", "start_time", "caption"])
        w.writerows([[1, "aaa", 30, "a dog barks"], [2, "bbb", 0, "rain falls"], [3, "ccc", 10, "gone"]])
    for name in ("aaa_30.mp3", "bbb_0.mp3"):
        _tone(root / "audio_32000Hz" / "train" / name, sr=32_000)
    corpus = load_corpus("audiocaps", tmp_path, "train")
    assert [(c.clip_id, c.captions) for c in corpus.clips] == [("aaa_30.mp3", ("a dog barks",)),
                                                               ("bbb_0.mp3", ("rain falls",))]
    assert corpus.removed == {"not_on_disk": 1}
    with pytest.raises(CorpusError, match="not prepared"):
        load_corpus("audiocaps", tmp_path, "val")


def test_folder_corpus_sorted_with_deduplicated_queries(tmp_path):
    audio = tmp_path / "audio"
    for name in ("b.wav", "a.flac", "c.mp3"):
        _tone(audio / name)
    (audio / "notes.txt").write_text("not audio")
    captions = tmp_path / "q.csv"
    captions.write_text("caption\nwater flows\nbirds sing\nwater flows\n")
    corpus = load_corpus("folder", audio, "predict", captions_csv=captions)
    assert [c.clip_id for c in corpus.clips] == ["a.flac", "b.wav", "c.mp3"]
    assert corpus.queries == ["water flows", "birds sing"]
    assert corpus.removed == {"not_audio": 1}
    assert all(abs(c.duration - 0.5) < 0.06 for c in corpus.clips)
    bad = tmp_path / "bad.csv"
    bad.write_text("text\nhello\n")
    with pytest.raises(CorpusError, match="no column 'caption'"):
        load_corpus("folder", audio, "predict", captions_csv=bad)


def test_folder_corpus_pairs_captions_by_file_name(tmp_path):
    _tone(tmp_path / "x.wav")
    _tone(tmp_path / "y.wav")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("file_name,caption\nx.wav,one\nx.wav,two\ny.wav,three\n")
    corpus = load_corpus("folder", tmp_path, "mine", captions_csv=pairs)
    assert [c.captions for c in corpus.clips] == [("one", "two"), ("three",)]


def test_clotho_missing_and_extra_files_are_reported_with_counts(tmp_path):
    root = synthesize(tmp_path / "s", n_dev=2, n_val=1, n_eval=4, max_duration=2.5)
    audio = root / "CLOTHO_v2.1/clotho_audio_files/evaluation"
    (audio / "synth_eval_0001.wav").unlink()
    with pytest.raises(CorpusError) as info:
        load_corpus("clotho", root, "eval")
    assert "1 of 4 audio files are missing" in str(info.value) and "synth_eval_0001.wav" in str(info.value)
    corpus = load_corpus("clotho", root, "eval", allow_missing=True)
    assert len(corpus) == 3 and corpus.removed == {"missing_audio": 1}
    _tone(audio / "synth_eval_0001.wav")
    _tone(audio / "stray.wav")
    with pytest.raises(CorpusError, match="not listed"):
        load_corpus("clotho", root, "eval")


def test_names_and_unknown_corpus():
    assert "clotho" in corpus_names() and "wavcaps-audioset" in corpus_names() and "folder" in corpus_names()
    with pytest.raises(CorpusError, match="unknown corpus"):
        load_corpus("macs", ".", "train")
