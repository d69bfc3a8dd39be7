"""Bad input files (issue 14, items 6, 7, 9): every captions CSV reader loads a UTF-8 BOM, refuses a
lost column, a non-UTF-8 file and (Clotho) a repeated ``file_name`` with one line naming the file;
empty captions are reported; float audio far outside [-1, 1] is refused as a failed item."""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioret.audio import AudioDecodeError, load_audio
from audioret.corpora import CorpusError, load_corpus, synthesize
from audioret.errors import user_error_types

CSV_DIR = Path("CLOTHO_v2.1") / "clotho_csv_files"


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    return synthesize(tmp_path_factory.mktemp("bad_input_corpus"), n_dev=3, n_val=3, n_eval=3, seed=1,
                      min_duration=0.5, max_duration=1.0)


@pytest.fixture
def corpus(small_corpus: Path, tmp_path: Path) -> Path:
    """A private copy whose CSVs a test may damage."""
    return Path(shutil.copytree(small_corpus, tmp_path / "corpus"))


def _captions_csv(root: Path, split_dir: str = "validation") -> Path:
    return root / CSV_DIR / f"clotho_captions_{split_dir}.csv"


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _write(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> None:
    with path.open("w", newline="", encoding=encoding) as f:
        csv.writer(f).writerows(rows)


def _one_line_user_error(err: BaseException, *names: str) -> str:
    msg = str(err)
    assert isinstance(err, user_error_types()) and "\n" not in msg
    for name in names:
        assert name in msg, (name, msg)
    return msg


# ---- 14.6: a repeated file_name ----------------------------------------------------------------
def test_duplicate_file_name_in_clotho_captions_is_refused_naming_csv_and_rows(corpus):
    path = _captions_csv(corpus)
    rows = _rows(path)
    rows.append([rows[1][0]] + [f"another caption {i}" for i in range(5)])
    _write(path, rows)
    with pytest.raises(CorpusError) as info:
        load_corpus("clotho", corpus, "val", durations=False)
    msg = _one_line_user_error(info.value, str(path), repr(rows[1][0]), "lines 2, 5")
    assert "listed once" in msg


def test_duplicate_file_name_in_evaluate_ground_truth_is_refused(corpus):
    from audioret.evaluate.io import read_clotho_captions

    path = _captions_csv(corpus)
    rows = _rows(path)
    _write(path, rows + [rows[2]])
    with pytest.raises(ValueError) as info:
        read_clotho_captions(path)
    _one_line_user_error(info.value, str(path), rows[2][0])


# ---- 14.7: BOM, lost columns, other encodings --------------------------------------------------
def test_clotho_captions_with_bom_load_like_without(corpus):
    plain = load_corpus("clotho", corpus, "val", durations=False)
    path = _captions_csv(corpus)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    with_bom = load_corpus("clotho", corpus, "val", durations=False)
    assert [(c.clip_id, c.captions) for c in with_bom.clips] == [(c.clip_id, c.captions) for c in plain.clips]


@pytest.mark.parametrize("column", ["file_name", "caption_5"])
def test_clotho_captions_missing_column_is_one_line(corpus, column):
    path = _captions_csv(corpus)
    rows = _rows(path)
    drop = rows[0].index(column)
    _write(path, [r[:drop] + r[drop + 1:] for r in rows])
    with pytest.raises(CorpusError) as info:
        load_corpus("clotho", corpus, "val", durations=False)
    msg = _one_line_user_error(info.value, str(path), repr(column))
    assert "columns found" in msg and "caption_1" in msg


def test_clotho_captions_not_utf8_names_file_and_offset(corpus):
    path = _captions_csv(corpus)
    rows = _rows(path)
    rows[1][1] = "caf\u00e9 noise"
    _write(path, rows, encoding="cp1252")
    offset = path.read_bytes().index(b"\xe9")
    with pytest.raises(CorpusError) as info:
        load_corpus("clotho", corpus, "val", durations=False)
    _one_line_user_error(info.value, str(path), "not UTF-8", f"0xe9 at offset {offset}", "re-save")


def test_clotho_short_row_is_one_line(corpus):
    path = _captions_csv(corpus)
    rows = _rows(path)
    rows[2] = rows[2][:3]
    _write(path, rows)
    with pytest.raises(CorpusError) as info:
        load_corpus("clotho", corpus, "val", durations=False)
    _one_line_user_error(info.value, str(path), "line 3")


def test_folder_captions_csv_bom_missing_column_and_encoding(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(str(audio / "a.wav"), np.zeros(1600, np.float32), 16000)
    q = tmp_path / "q.csv"
    q.write_bytes("\ufeffcaption\nbirds sing\n".encode("utf-8"))
    assert load_corpus("folder", audio, "predict", captions_csv=q, durations=False).queries == ["birds sing"]
    q.write_bytes("query\nbirds sing\n".encode("utf-8"))
    with pytest.raises(CorpusError) as info:
        load_corpus("folder", audio, "predict", captions_csv=q)
    _one_line_user_error(info.value, str(q), "'caption'", "['query']")
    q.write_bytes("caption\nna\xefve\n".encode("latin-1"))
    with pytest.raises(CorpusError) as info:
        load_corpus("folder", audio, "predict", captions_csv=q)
    _one_line_user_error(info.value, str(q), "offset 10")


def test_audiocaps_csv_with_bom_loads_and_lost_column_is_one_line(tmp_path):
    root = tmp_path / "AUDIOCAPS"
    (root / "csv_files_v1").mkdir(parents=True)
    path = root / "csv_files_v1" / "train.csv"
    path.write_bytes("\ufeffaudiocap_id,youtube_id,start_time,caption\n1,aaa,30,a dog barks\n"
                     "2,aaa,30,a dog barks twice\n".encode("utf-8"))
    (root / "audio_32000Hz" / "train").mkdir(parents=True)
    sf.write(str(root / "audio_32000Hz" / "train" / "aaa_30.mp3"), np.zeros(32000, np.float32), 32000)
    corpus = load_corpus("audiocaps", tmp_path, "train")
    assert [(c.clip_id, c.captions) for c in corpus.clips] == [("aaa_30.mp3", ("a dog barks", "a dog barks twice"))]
    path.write_text("audiocap_id,youtube_id,start,caption\n1,aaa,30,a dog barks\n")
    with pytest.raises(CorpusError) as info:
        load_corpus("audiocaps", tmp_path, "train")
    _one_line_user_error(info.value, str(path), "'start_time'")


def test_wavcaps_json_that_is_not_json_is_one_line(tmp_path):
    from audioret.corpora import import_aac_datasets

    import_aac_datasets()
    from aac_datasets.datasets.functional import wavcaps as f

    json_path = Path(f._get_json_dpath(str(tmp_path), None, None)) / "SoundBible" / "sb_final.json"
    json_path.parent.mkdir(parents=True)
    json_path.write_bytes(b"\xff\xfe not json")
    with pytest.raises(CorpusError) as info:
        load_corpus("wavcaps-soundbible", tmp_path, "train")
    _one_line_user_error(info.value, str(json_path), "--download")


def test_evaluate_readers_name_a_non_utf8_file(tmp_path):
    from audioret.evaluate.io import read_annotations
    from audioret.evaluate.report import load_ground_truth
    from audioret.evaluate.submission import read_ranked, submission_kind

    ann = tmp_path / "ann.csv"
    ann.write_bytes("query,audio_filenames\ncaf\xe9,['a.wav']\n".encode("latin-1"))
    for call in (lambda: read_annotations(ann), lambda: load_ground_truth([ann])):
        with pytest.raises(ValueError) as info:
            call()
        _one_line_user_error(info.value, str(ann), "not UTF-8", "offset 25")
    sub = tmp_path / "sub.csv"
    sub.write_bytes("caption,fname_1\ncaf\xe9,a.wav\n".encode("latin-1"))
    for call in (lambda: submission_kind(sub), lambda: read_ranked(sub)):
        with pytest.raises(ValueError) as info:
            call()
        _one_line_user_error(info.value, str(sub), "not UTF-8")
    ann.write_bytes("\ufeffquery,audio_filenames\nbirds,['a.wav']\n".encode("utf-8"))
    assert read_annotations(ann)[0].files == ("a.wav",)


def test_evaluate_annotations_short_row_is_one_line(tmp_path):
    from audioret.evaluate.io import read_annotations

    ann = tmp_path / "ann.csv"
    ann.write_text("query,audio_filenames\nbirds\n")
    with pytest.raises(ValueError) as info:
        read_annotations(ann)
    _one_line_user_error(info.value, str(ann), "line 2")


# ---- 14.9: empty captions, integer-scaled float audio ------------------------------------------
def test_empty_captions_are_reported_once_per_split(corpus, caplog):
    path = _captions_csv(corpus)
    rows = _rows(path)
    rows[1][3] = ""
    rows[3][1] = "  "
    _write(path, rows)
    with caplog.at_level(logging.WARNING, logger="audioret.corpora"):
        split = load_corpus("clotho", corpus, "val", durations=False)
    warnings = [r.getMessage() for r in caplog.records if "empty caption" in r.getMessage()]
    assert len(warnings) == 1
    assert "2 clip(s)" in warnings[0] and rows[1][0] in warnings[0] and rows[3][0] in warnings[0]
    assert len(split) == 3  # kept: a warning, not a refusal
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="audioret.corpora"):
        load_corpus("clotho", corpus, "eval", durations=False)
    assert not [r for r in caplog.records if "empty caption" in r.getMessage()]


def test_empty_query_in_folder_csv_is_reported(tmp_path, caplog):
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(str(audio / "a.wav"), np.zeros(1600, np.float32), 16000)
    q = tmp_path / "q.csv"
    q.write_text('caption\nbirds sing\n""\n')
    with caplog.at_level(logging.WARNING, logger="audioret.corpora"):
        load_corpus("folder", audio, "predict", captions_csv=q, durations=False)
    assert any("empty caption" in r.getMessage() and "lines 3" in r.getMessage() for r in caplog.records)


def _float_wav(path: Path, peak: float) -> Path:
    wave = (peak * np.sin(np.arange(16000) / 7)).astype(np.float32)
    sf.write(str(path), wave, 16000, subtype="FLOAT")
    return path


def test_integer_scaled_float_wav_is_refused_naming_the_file(tmp_path):
    path = _float_wav(tmp_path / "int_scaled.wav", 3e5)
    with pytest.raises(AudioDecodeError) as info:
        load_audio(path)
    assert str(path) in str(info.value) and "integer-scaled" in info.value.reason


@pytest.mark.parametrize("peak", [0.5, 1.02, 2.0, 8.0])
def test_float_wav_over_full_scale_within_the_limit_is_kept(tmp_path, peak):
    path = _float_wav(tmp_path / "hot.wav", peak)
    wave = load_audio(path)
    assert abs(float(wave.abs().max()) - peak) < 0.01 * peak  # not clipped, not rescaled


def test_extract_records_an_integer_scaled_file_as_failed(corpus, tmp_path):
    from audioret.extract import ExtractConfig, run
    from audioret.store import open_store

    audio_dir = corpus / "CLOTHO_v2.1" / "clotho_audio_files" / "validation"
    victim = sorted(audio_dir.iterdir())[0]
    _float_wav(victim, 3e5)
    store = tmp_path / "store.zarr"
    run(ExtractConfig(data_path=corpus, store=store, corpus="clotho", splits=("val",), passes=("audio",),
                      audio_encoder="tiny-beats", num_workers=0, progress=False))
    audio = open_store(store).audio("val")
    failed = {audio.ids[i]: reason for i, reason in audio.failures.items()}
    assert list(failed) == [victim.name] and "integer-scaled" in failed[victim.name]


# ---- 14.9: --text-model as a folder holding the store's model ----------------------------------
def test_text_model_given_as_its_folder_reopens_the_store_another_model_is_refused(small_corpus, tmp_path):
    import torch
    from transformers import AutoModel

    from audioret.encoders.registry import build_tiny_roberta, cache_dir
    from audioret.extract import ExtractConfig, run
    from audioret.store import StoreMismatchError

    kw = dict(data_path=small_corpus, store=tmp_path / "s.zarr", corpus="clotho", splits=("val",),
              passes=("text",), num_workers=0, progress=False)
    run(ExtractConfig(text_model="tiny-roberta", **kw))
    folder = build_tiny_roberta(cache_dir())
    again = run(ExtractConfig(text_model=str(folder), **kw))  # same files under another name: accepted
    assert [(s.kind, s.processed) for s in again.stats] == [("text", 0)]
    other = Path(shutil.copytree(folder, tmp_path / "other"))
    model = AutoModel.from_pretrained(other)
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    model.save_pretrained(other)
    with pytest.raises(StoreMismatchError, match="weights_sha256"):
        run(ExtractConfig(text_model=str(other), **kw))
