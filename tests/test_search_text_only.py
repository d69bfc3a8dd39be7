"""search/serve load only the checkpoint's text side (``evaluate.sources.load_text_model``): a heads
index still answers when the audio encoder cannot be built (its BEATs/PaSST file left behind), with the
same results; the text-only loaders embed captions exactly as the full models do (heads, finetune)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("faiss", reason="the search extra (faiss-cpu) is not installed")

from audioret.encoders import registry  # noqa: E402
from audioret.evaluate.sources import (FinetunedTextModel, HeadsTextModel, load_raw_model,  # noqa: E402
                                       load_text_model)
from audioret.models import HeadConfig, RetrievalHeads, save_heads  # noqa: E402
from audioret.search.config import IndexConfig  # noqa: E402
from audioret.search.index import run as index_run  # noqa: E402
from audioret.search.query import Searcher  # noqa: E402
from audioret.store import open_store  # noqa: E402

SPLIT = "eval"
CAPTIONS = ["a dog barks in the distance", "rain falls on a tin roof", "birds sing", "a car passes by quickly"]


@pytest.fixture(scope="module")
def store(synth_corpus, tmp_path_factory):
    from audioret.extract import ExtractConfig, run as extract_run

    path = tmp_path_factory.mktemp("text_only_store") / "store.zarr"
    extract_run(ExtractConfig(corpus="clotho", data_path=synth_corpus, store=path, splits=(SPLIT,),
                              audio_encoder="tiny-beats", text_model="tiny-roberta", batch_windows=4,
                              num_workers=0, progress=False))
    return path


@pytest.fixture(scope="module")
def heads_ckpt(store, tmp_path_factory):
    st = open_store(store)
    audio, text = st.audio(SPLIT), st.text(SPLIT)
    torch.manual_seed(0)
    heads = RetrievalHeads(HeadConfig(audio_dim=audio.get("frames", 0).shape[1],
                                      text_dim=text.get("tokens", 0).shape[1], embed_dim=16, hidden_dim=32))
    out = tmp_path_factory.mktemp("text_only_heads") / "run" / "heads.pt"
    out.parent.mkdir(parents=True)
    return save_heads(out, heads.eval(), store={"path": str(store), "metadata": st.metadata})


@pytest.fixture(scope="module")
def finetune_ckpt(tmp_path_factory):
    """A tiny DualEncoder in the finetune Lightning layout (as tests/test_evaluate_raw.py saves it)."""
    from audioret.models.dual_encoder import build_dual_encoder

    spec = {"audio_encoder": "tiny-beats", "text_model": "tiny-roberta", "embed_dim": 16, "max_seconds": 30.0}
    torch.manual_seed(1)
    model = build_dual_encoder(spec)
    path = tmp_path_factory.mktemp("text_only_ft") / "last.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": spec, "epoch": 0, "global_step": 2}, path)
    return path


def _no_audio_encoder(monkeypatch):
    """What a laptop without the BEATs/PaSST file sees: building any audio encoder fails."""
    def refuse(*args, **kwargs):
        raise FileNotFoundError("the audio encoder's weights file is not on this machine")

    monkeypatch.setattr(registry, "build_audio_encoder", refuse)


def test_heads_index_searches_without_the_audio_encoder(store, heads_ckpt, tmp_path, monkeypatch):
    out = tmp_path / "idx"
    index_run(IndexConfig(checkpoint=heads_ckpt, out=out, store=store, split=SPLIT, num_workers=0))
    before = Searcher(out).search(CAPTIONS, 5)
    _no_audio_encoder(monkeypatch)
    after = Searcher(out).search(CAPTIONS, 5)
    assert [[h.clip for h in row] for row in after] == [[h.clip for h in row] for row in before]
    assert [[h.score for h in row] for row in after] == [[h.score for h in row] for row in before]


def test_finetune_index_searches_without_the_audio_encoder(synth_corpus, finetune_ckpt, tmp_path, monkeypatch):
    audio_dir = synth_corpus / "CLOTHO_v2.1" / "clotho_audio_files" / "evaluation"
    out = tmp_path / "idx"
    index_run(IndexConfig(checkpoint=finetune_ckpt, out=out, audio_dir=audio_dir, num_workers=0))
    before = Searcher(out).search(CAPTIONS, 5)
    _no_audio_encoder(monkeypatch)
    after = Searcher(out).search(CAPTIONS, 5)  # text identity still checked against the index
    assert [[(h.clip, h.score) for h in row] for row in after] == [[(h.clip, h.score) for h in row] for row in before]


@pytest.mark.parametrize("kind", ["heads", "finetune"])
def test_text_only_model_embeds_like_the_full_model(kind, heads_ckpt, finetune_ckpt, monkeypatch):
    path = heads_ckpt if kind == "heads" else finetune_ckpt
    full = load_raw_model(path).embed_captions(CAPTIONS)  # [N, D]
    _no_audio_encoder(monkeypatch)
    text = load_text_model(path)
    assert isinstance(text, HeadsTextModel if kind == "heads" else FinetunedTextModel)
    got = text.embed_text(CAPTIONS)
    assert got.shape == full.shape == (len(CAPTIONS), 16)
    torch.testing.assert_close(got, full, rtol=0, atol=0)  # the same weights through the same code
