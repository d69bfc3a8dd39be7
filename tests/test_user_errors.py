"""User-facing messages: one line, CLI flags (not Python keywords), commands that exist, and
``store info`` that never cuts a value in half."""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np
import pytest
import torch

from audioret.corpora import CorpusError, load_corpus
from audioret.encoders.beats import CheckpointError, load_beats
from audioret.encoders.registry import build_audio_encoder
from audioret.store import create_store
from audioret.store.cli import main as store_main

PYTHON_SPELLINGS = re.compile(r"\b[a-z_]+=(True|False|PATH)\b")


def assert_cli_message(msg: str) -> None:
    assert "\n" not in msg, msg
    assert not PYTHON_SPELLINGS.search(msg), msg
    assert "huggingface-cli" not in msg


def test_missing_clotho_names_the_flags_on_one_line(tmp_path):
    with pytest.raises(CorpusError) as err:
        load_corpus("clotho", tmp_path / "data", "dev")
    msg = str(err.value)
    assert_cli_message(msg)
    assert "--data-path" in msg and "--download" in msg and "audioret corpus synth" in msg


def test_missing_audio_files_report_is_one_line(tmp_path):
    from audioret.corpora import synthesize

    root = synthesize(tmp_path / "c", n_dev=2, n_val=1, n_eval=5, seed=0)
    audio = sorted((pathlib.Path(root) / "CLOTHO_v2.1" / "clotho_audio_files" / "evaluation").iterdir())
    for f in audio:
        f.unlink()
    with pytest.raises(CorpusError) as err:
        load_corpus("clotho", root, "eval")
    msg = str(err.value)
    assert_cli_message(msg)
    assert "5 of 5 audio files are missing" in msg and "and 2 more" in msg


def test_folder_and_wavcaps_messages_use_flags(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    with pytest.raises(CorpusError) as err:
        load_corpus("folder", tmp_path, "eval", captions_csv=tmp_path / "none.csv")
    assert_cli_message(str(err.value))
    assert "--captions-csv" in str(err.value)
    with pytest.raises(CorpusError) as err:
        load_corpus("wavcaps-bbc", tmp_path / "data", "train")
    assert_cli_message(str(err.value))
    assert "--download" in str(err.value)


@pytest.mark.parametrize("kind", ["garbage", "pickled", "zip"])
def test_unreadable_beats_file_is_one_line_naming_the_flag(tmp_path, kind):
    path = tmp_path / "bad.pt"
    if kind == "garbage":
        path.write_text("not a checkpoint\n")
    elif kind == "pickled":  # plain objects outside torch's weights_only allow-list
        torch.save({"cfg": pathlib.PurePosixPath("x"), "model": {}}, path)
    else:
        torch.save({"cfg": {}, "model": {}}, path)
        path.write_bytes(path.read_bytes()[:-100])  # truncated archive
    with pytest.raises(CheckpointError) as err:
        load_beats(path)
    msg = str(err.value)
    assert_cli_message(msg)
    assert str(path) in msg and "--beats-ckpt" in msg and "Weights only load failed" not in msg


def test_beats_without_checkpoint_names_the_flag():
    with pytest.raises(ValueError) as err:
        build_audio_encoder("beats")
    assert_cli_message(str(err.value))
    assert "--beats-ckpt" in str(err.value)


def test_existing_foreign_store_names_the_extract_flag(tmp_path):
    import zarr

    zarr.open_group(str(tmp_path / "s.zarr"), mode="w").create_group("x")
    from audioret.store import StoreError

    with pytest.raises(StoreError) as err:
        create_store(tmp_path / "s.zarr", {"audio_encoder": {"name": "a"}})
    assert_cli_message(str(err.value))
    assert "--overwrite" in str(err.value)


# ------------------------------------------------------------------ store info

def test_short_value_cuts_between_whole_items_with_a_marker():
    from audioret.store.cli import short_value

    config = {f"key_{i}": i * 1000 for i in range(40)}
    text = short_value(config, limit=80)
    assert len(text) < 130 and text.startswith('{"key_0": 0') and text.endswith("see --json)}")
    shown = text.split(", …(")[0] + "}"
    assert json.loads(shown).items() <= config.items()  # every shown entry is whole
    more = int(re.search(r"…\((\d+) more chars", text).group(1))
    assert abs(len(shown) + more - len(json.dumps(config))) <= 4
    words = "word " * 60
    cut = short_value(words, limit=50)
    assert cut.startswith("word word") and "more chars, see --json" in cut
    assert all(w in ("word", "") for w in cut.split(" …(")[0].split(" "))
    assert short_value({"a": 1}) == '{"a": 1}' and short_value("plain") == "plain"


def test_store_info_never_cuts_a_token(tmp_path, capsys):
    long_cfg = {f"encoder_option_{i}": f"value_{i}" for i in range(60)}
    st = create_store(tmp_path / "s.zarr", {"audio_encoder": {"name": "tiny-beats", "config": long_cfg},
                                            "preprocessing": {"padding": "zero " * 80}})
    st.plan_audio("dev", ["a.wav"], np.array([3]), np.array([1]), dim=4, num_parts=1, chunk_rows=8,
                  shard_chunks=1)
    assert store_main(["info", str(tmp_path / "s.zarr")]) == 0
    out = capsys.readouterr().out
    config_line = next(line for line in out.splitlines() if line.strip().startswith("config:"))
    value = config_line.split("config:", 1)[1].strip()
    assert value.endswith("more chars, see --json)}")
    json.loads(value.split(", …(")[0] + "}")  # the shown part is valid JSON: nothing cut mid-token
    assert "name: tiny-beats" in out
    assert store_main(["info", str(tmp_path / "s.zarr"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metadata"]["audio_encoder"]["config"] == long_cfg


def test_store_info_on_a_missing_store_is_one_line_exit_2(tmp_path, capsys):
    assert store_main(["info", str(tmp_path / "none.zarr")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("audioret store info: error:") and err.count("\n") == 1


def test_report_user_error_prints_one_line_even_for_multi_line_messages(capsys):
    from audioret.errors import report_user_error
    from audioret.store import StoreMismatchError

    err = StoreMismatchError("s.zarr", {"audio_encoder.name": ("beats", "tiny-beats"), "codec": ("none", "zstd")},
                             hint="pass --overwrite (audioret extract) to replace the store")
    assert report_user_error("audioret extract", err) == 2
    printed = capsys.readouterr().err
    assert printed.count("\n") == 1 and printed.startswith("audioret extract: error: store s.zarr")
    assert "audio_encoder.name: store has 'beats', expected 'tiny-beats'; codec:" in printed
    assert printed.rstrip().endswith("; pass --overwrite (audioret extract) to replace the store")


def test_corpus_list_on_missing_data_is_one_line_exit_2(tmp_path, capsys):
    from audioret.corpora.cli import main as corpus_main

    assert corpus_main(["list", "--corpus", "clotho", "--data-path", str(tmp_path / "none"), "--split", "dev"]) == 2
    err = capsys.readouterr().err
    assert err.rstrip("\n").splitlines()[-1].startswith("audioret corpus list: error: clotho dev:")
