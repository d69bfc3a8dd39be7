"""The official PaSST baseline checkpoint loads directly in evaluate / predict.

A checkpoint is written here by a module with the baseline's exact attribute tree (baseline.md 11:
``audio_embedding_model.model.model`` = hear21passt's PaSST, ``.model.mel`` = its AugmentMelSTFT
(no keys), ``audio_projection``, ``text_embedding_model`` = a RoBERTa without pooler,
``text_projection``, ``tau``), plain and compiled (``torch.compile`` wraps both encoders, so their
keys read ``_orig_mod.``), with the 26 hyper-parameters of ``d25_t6.train``. Embeddings must equal
what the baseline computes: hear21passt + the 30 s / three-window duration rule + projection for
audio, ``<s>`` of RoBERTa on the cleaned caption (padded to 32) + projection for text.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audioret.encoders import passt as P

pytest.importorskip("hear21passt")

TOL = 1e-4
SR = P.SAMPLE_RATE
HPARAMS = dict(devices="auto", n_workers=16, compile=True, logging=True, resume_ckpt_path=None,
               load_ckpt_path=None, seed=21208, batch_size=64, batch_size_eval=64, max_epochs=20,
               warmup_epochs=1, rampdown_epochs=15, max_lr=2e-5, min_lr=1e-7, initial_tau=0.05,
               tau_trainable=False, s_patchout_t=15, s_patchout_f=2, roberta_base=False, wavcaps=True,
               audiocaps=True, ablate_clean_setup=True, data_path="data", checkpoints_path="checkpoints",
               train=True, test=True)


from passt_reference import baseline_clip_embedding, clips, hear_mel, hear_model  # noqa: E402


class Baseline(nn.Module):
    """The d25_t6 AudioRetrievalModel's attribute tree and forward maths (from baseline.md 1, 3, 4)."""

    def __init__(self, passt: nn.Module, roberta: nn.Module, tokenizer, compiled: bool) -> None:
        super().__init__()
        self.audio_embedding_model = nn.Module()
        self.audio_embedding_model.model = nn.Module()
        self.audio_embedding_model.model.model = torch.compile(passt) if compiled else passt
        self.audio_embedding_model.model.mel = hear_mel()
        self.audio_projection = nn.Linear(passt.embed_dim, 1024)
        self.text_embedding_model = torch.compile(roberta) if compiled else roberta
        self.text_projection = nn.Linear(roberta.config.hidden_size, 1024)
        self.tau = nn.Parameter(torch.full((1,), 0.05), requires_grad=False)
        # plain references (not submodules: the state dict holds only the baseline's keys)
        self.__dict__.update(passt=passt, roberta=roberta, tokenizer=tokenizer)

    def embed_audio(self, wave: torch.Tensor) -> torch.Tensor:
        """One 32 kHz clip: pad/crop 30 s, 3 segments, duration rule, projection, L2."""
        with torch.no_grad():
            return F.normalize(self.audio_projection(baseline_clip_embedding(self.passt, wave)), dim=-1)

    def embed_text(self, captions: list[str]) -> torch.Tensor:
        import string
        clean = [c.lower().translate(str.maketrans("", "", string.punctuation)) for c in captions]
        tok = self.tokenizer(clean, padding="max_length", truncation=True, max_length=32, return_tensors="pt")
        with torch.no_grad():
            out = self.roberta.eval()(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
        return F.normalize(self.text_projection(out.last_hidden_state[:, 0]), dim=-1)


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory):
    from audioret.encoders.text import build_tiny_roberta
    return build_tiny_roberta(tmp_path_factory.mktemp("cache"))


def make_baseline(tiny_roberta, compiled: bool, seed: int = 3) -> Baseline:
    from transformers import AutoTokenizer, RobertaModel

    cfg = P.tiny_passt_config(num_classes=527)
    passt = hear_model(cfg)
    passt.load_state_dict(P.randomize_(P.PaSST(cfg), seed).state_dict())
    torch.manual_seed(seed)
    roberta = RobertaModel.from_pretrained(tiny_roberta, add_pooling_layer=False)
    with torch.no_grad():  # move the text weights away from the cached tiny model's
        for p in roberta.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model = Baseline(passt, roberta, AutoTokenizer.from_pretrained(tiny_roberta), compiled)
    with torch.no_grad():
        model.audio_projection.weight.normal_(0, 0.1)
        model.text_projection.weight.normal_(0, 0.1)
    return model


def save_lightning(model: Baseline, path) -> None:
    state = {k: v for k, v in model.state_dict().items()}
    torch.save({"epoch": 19, "global_step": 1000, "pytorch-lightning_version": "2.5.0", "state_dict": state,
                "loops": {}, "callbacks": {}, "optimizer_states": [], "lr_schedulers": [],
                "hparams_name": "kwargs", "hyper_parameters": dict(HPARAMS)}, path)


@pytest.mark.parametrize("compiled", [True, False])
def test_official_layout_checkpoint_embeds_like_the_baseline(tiny_roberta, tmp_path, compiled):
    from audioret.evaluate.sources import FINETUNE, checkpoint_kind, load_raw_model

    base = make_baseline(tiny_roberta, compiled)
    keys = list(base.state_dict())
    tower = "audio_embedding_model.model.model." + ("_orig_mod." if compiled else "")
    assert sum(k.startswith(tower) for k in keys) == 15 + 12 * 2 and "tau" in keys  # 159 at 12 layers
    assert len(keys) == 39 + 2 * 2 + 1 + len(base.roberta.state_dict())
    assert any(k.startswith("text_embedding_model._orig_mod.") for k in keys) == compiled
    assert not any(".mel." in k or "pooler" in k for k in keys)
    path = tmp_path / "baseline.ckpt"
    save_lightning(base, path)

    assert checkpoint_kind(path) == FINETUNE
    model = load_raw_model(path, text_model=str(tiny_roberta))
    assert model.decode.sample_rate == SR and model.decode.max_samples == 30 * SR
    dual = model.model
    assert dual.audio_encoder.name == "passt" and not dual.audio_encoder.model.training
    assert float(dual.tau) == pytest.approx(0.05)
    waves = clips([4.0, 10.0, 10.5, 17.0, 26.0], seed=1)
    got = model.embed_waves(waves)
    want = torch.stack([base.embed_audio(w) for w in waves])
    assert got.shape == (5, 1024) and (got - want).abs().max() < TOL
    captions = ["A dog barks, loudly!", "rain falls on a roof", "Children laugh in a park."]
    got_t = model.embed_captions(captions)
    assert (got_t - base.embed_text(captions)).abs().max() < TOL


def test_official_checkpoint_evaluates_and_predicts_offline(tiny_roberta, tmp_path, synth_corpus, monkeypatch):
    """`audioret evaluate --checkpoint <official .ckpt>` and `predict` run on it (no network: the
    hub is off), and the metrics are those of the baseline's own embeddings."""
    import csv

    from audioret.audio import load_audio
    from audioret.corpora import load_corpus
    from audioret.evaluate import metrics as M
    from audioret.evaluate.cli import main as evaluate_main
    from audioret.evaluate.predict import main as predict_main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base = make_baseline(tiny_roberta, compiled=True, seed=8)
    path = tmp_path / "official.ckpt"
    save_lightning(base, path)
    out = tmp_path / "ev"
    assert evaluate_main(["--checkpoint", str(path), "--data-path", str(synth_corpus), "--corpus", "clotho",
                          "--split", "val", "--text-model", str(tiny_roberta), "--out", str(out),
                          "--num-workers", "0", "--batch-size", "4", "--no-embedding-cache"]) == 0
    got = json.loads((out / "metrics.json").read_text())["metrics"]
    cs = load_corpus("clotho", synth_corpus, "val").clips
    audio = torch.stack([base.embed_audio(load_audio(c.path, SR, max_samples=30 * SR)) for c in cs])
    text = base.embed_text([cap for c in cs for cap in c.captions])
    want = M.retrieval_metrics(text, audio, [i for i, c in enumerate(cs) for _ in c.captions])
    assert got == pytest.approx(want, abs=1e-6)

    audio_dir = synth_corpus / "CLOTHO_v2.1" / "clotho_audio_files" / "validation"
    caps = tmp_path / "captions.csv"
    with open(caps, "w", newline="") as f:
        csv.writer(f).writerows([["caption"], ["a dog barks"], ["rain on a roof"]])
    pred = tmp_path / "pred"
    assert predict_main(["--checkpoint", str(path), "--audio-dir", str(audio_dir), "--captions", str(caps),
                         "--text-model", str(tiny_roberta), "--out", str(pred), "--name", "official",
                         "--num-workers", "0", "--no-embedding-cache"]) == 0
    rows = list(csv.reader(open(pred / "official.csv")))
    assert len(rows) == 3 and len(rows[0]) == 1 + len(list(audio_dir.glob("*.wav")))


def test_mixed_up_checkpoint_is_refused(tiny_roberta, tmp_path):
    from audioret.models.dual_encoder import load_finetuned

    base = make_baseline(tiny_roberta, compiled=False)
    path = tmp_path / "mixed.ckpt"
    save_lightning(base, path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["hyper_parameters"]["audio_encoder"] = "beats"
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="PaSST tower"):
        load_finetuned(path, text_model=str(tiny_roberta))


def test_finetune_starts_from_the_official_checkpoint(tiny_roberta, tmp_path, synth_corpus):
    """`audioret finetune --audio-encoder passt --load_ckpt_path <official .ckpt>`: the PaSST tower and
    every other weight come from the checkpoint (no PaSST file), then training moves them."""
    from audioret.finetune.config import FinetuneConfig
    from audioret.finetune.run import run
    from audioret.models.dual_encoder import load_finetuned

    base = make_baseline(tiny_roberta, compiled=True, seed=6)
    path = tmp_path / "official.ckpt"
    save_lightning(base, path)
    out = tmp_path / "ft"
    run(FinetuneConfig(data_path=synth_corpus, audio_encoder="passt", load_ckpt_path=path, audio_trainable=True,
                       text_model=str(tiny_roberta), n_workers=0, precision="32-true", logging=False, out=out,
                       batch_size=2, max_steps=1, max_epochs=1, limit_train_batches=1, limit_val_batches=0,
                       test=False, max_lr=1e-3, warmup_epochs=0.0))
    model = load_finetuned(out / "checkpoints" / "last.ckpt")
    assert model.audio_encoder.name == "passt" and model.sample_rate == SR
    start = {k: v for k, v in base.passt.state_dict().items()}
    now = model.audio_encoder.model.state_dict()
    assert torch.equal(now["head.1.weight"], start["head.1.weight"])      # unused head: untouched
    moved = (now["blocks.0.attn.qkv.weight"] - start["blocks.0.attn.qkv.weight"]).abs().max()
    assert 0 < moved < 0.05                                                # started from it, then trained
