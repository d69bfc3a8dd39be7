"""Passes run one after another into one store: a text-only first pass knows no audio encoder, so it
must not pin audio settings (rate, windows, pooling, ...) that a later audio pass of any encoder would
then be refused on; once the store holds audio of one encoder, an audio pass of another is refused in
one sentence naming both, and text-only passes still join it."""

from __future__ import annotations

from pathlib import Path

import pytest

from audioret.extract import ExtractConfig, run
from audioret.extract.cli import main
from audioret.store import StoreMismatchError, open_store

SPLIT = "val"
COMMON = dict(corpus="clotho", splits=(SPLIT,), text_model="tiny-roberta", items_per_part=4,
              text_items_per_part=8, batch_windows=4, text_batch_size=8, num_workers=0, progress=False,
              dtype="float32")


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("AUDIORET_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


def _run(corpus: Path, store: Path, passes: tuple[str, ...], encoder: str = "tiny-beats"):
    return run(ExtractConfig(data_path=corpus, store=store, passes=passes, audio_encoder=encoder, **COMMON))


def _argv(corpus: Path, store: Path, passes: str, encoder: str) -> list[str]:
    return ["--data-path", str(corpus), "--store", str(store), "--corpus", "clotho", "--splits", SPLIT,
            "--passes", passes, "--audio-encoder", encoder, "--text-model", "tiny-roberta",
            "--items-per-part", "4", "--num-workers", "0", "--no-progress", "--dtype", "float32"]


@pytest.mark.parametrize("encoder", ["tiny-passt", "tiny-beats"])
def test_text_first_then_audio_records_what_a_one_shot_store_records(synth_corpus, tmp_path, encoder):
    store = tmp_path / "later.zarr"
    _run(synth_corpus, store, ("text",), encoder)
    text_meta = open_store(store).metadata
    assert "audio_encoder" not in text_meta and "sample_rate" not in text_meta["preprocessing"]
    result = _run(synth_corpus, store, ("audio",), encoder)
    assert [s.kind for s in result.stats] == ["audio"] and result.stats[0].processed == 8
    one_shot = tmp_path / "one_shot.zarr"
    _run(synth_corpus, one_shot, ("audio", "text"), encoder)
    later, ref = open_store(store).metadata, open_store(one_shot).metadata
    assert later["preprocessing"] == ref["preprocessing"]
    assert later["audio_encoder"] == ref["audio_encoder"] and later["text_encoder"] == ref["text_encoder"]
    st = open_store(store)
    st.audio(SPLIT).require_complete()
    st.text(SPLIT).require_complete()
    # the filled-in settings are the store's now: text passes join it, the same audio pass resumes
    assert [s.kind for s in _run(synth_corpus, store, ("text",), encoder).stats] == ["text"]
    assert _run(synth_corpus, store, ("audio",), encoder).stats[0].processed == 0


@pytest.mark.parametrize("first", [("audio",), ("text", "audio")])
def test_an_audio_pass_of_another_encoder_is_refused_naming_both(synth_corpus, tmp_path, capsys, first):
    store = tmp_path / "beats.zarr"
    for passes in first:   # a store with BEATs audio, made in one pass or after a text-only one
        _run(synth_corpus, store, (passes,), "tiny-beats")
    with pytest.raises(StoreMismatchError) as err:
        _run(synth_corpus, store, ("audio",), "tiny-passt")
    msg = str(err.value)
    assert "\n" not in msg and "'tiny-beats'" in msg and "'tiny-passt'" in msg and str(store) in msg
    assert "preprocessing.sample_rate" in err.value.differences      # the key-by-key detail is kept
    assert main(_argv(synth_corpus, store, "audio", "tiny-passt")) == 2
    line = capsys.readouterr().err.strip()
    assert "'tiny-beats'" in line and "'tiny-passt'" in line and "--audio-encoder" in line
    assert open_store(store).metadata["audio_encoder"]["name"] == "tiny-beats"   # nothing was changed
    assert main(_argv(synth_corpus, store, "text", "tiny-passt")) == 0           # text passes still join
