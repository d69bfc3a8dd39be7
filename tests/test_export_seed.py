"""``audioret export-seed``: checkpoints travel seed -> audioret -> seed.

``SeedModule`` is built to the seed's ``AudioRetrievalModel`` key layout (no Lightning ``model.``
prefix; ``audio_embedding_model.model.model.<BEATs>`` with BEATs' one relative-position table listed
under every layer, as the reference re-points it; ``audio_projection``, ``text_embedding_model``
(a tiny RoBERTa stands in for roberta-large), ``text_projection``, ``tau``) and its ``__init__(**kwargs)``
reads the seed's hyper-parameter names. It loads the export with Lightning's
``load_from_checkpoint`` and strict keys, weights-only.
"""

from __future__ import annotations

import string

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audioret.encoders.beats import load_beats
from audioret.encoders.registry import build_text_encoder, build_tiny_beats
from audioret.finetune.export_seed import SEED_HPARAMS, ExportSeedConfig, main, run
from audioret.models.dual_encoder import load_finetuned

CAPTIONS = ["a dog barks twice", "rain falls on a metal roof"]


class SeedModule(pl.LightningModule):
    """The seed's module layout and hyper-parameter reads (BEATs copy), with tiny encoders."""

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.save_hyperparameters(kwargs)
        beats = load_beats(kwargs["beats_ckpt_path"])
        table = beats.encoder.layers[0].self_attn.relative_attention_bias
        for layer in beats.encoder.layers[1:]:  # the reference shares one table, listed per layer
            layer.self_attn.relative_attention_bias = table
        self.audio_embedding_model = nn.Module()
        self.audio_embedding_model.model = nn.Module()
        self.audio_embedding_model.model.model = beats
        self.audio_projection = nn.Linear(beats.dim, 1024)
        text = build_text_encoder("tiny-roberta")
        self.tokenizer = text.tokenizer
        self.text_embedding_model = text.model.model if hasattr(text.model, "model") else text.model
        width = self.text_embedding_model.config.hidden_size
        self.text_projection = nn.Linear(width, 1024)
        self.tau = nn.Parameter(torch.zeros(1) + kwargs["initial_tau"], requires_grad=kwargs["tau_trainable"])
        assert not kwargs["roberta_base"] and kwargs["warmup_epochs"] >= 0 and kwargs["max_lr"] > 0

    @torch.no_grad()
    def embed_audio(self, wave: torch.Tensor) -> torch.Tensor:
        """One clip <= 10 s: zero-padded to 10 s, mean of all BEATs tokens, projected, normalised."""
        x = F.pad(wave, (0, 160000 - wave.shape[-1]))[None]
        feats = self.audio_embedding_model.model.model.extract_features(x)[0].mean(1)
        return F.normalize(self.audio_projection(feats), dim=-1)

    @torch.no_grad()
    def embed_text(self, captions: list[str]) -> torch.Tensor:
        caps = [c.lower().translate(str.maketrans("", "", string.punctuation)) for c in captions]
        tok = self.tokenizer(caps, add_special_tokens=True, padding="max_length", return_tensors="pt",
                             max_length=32, truncation=True)
        out = self.text_embedding_model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])[0]
        return F.normalize(self.text_projection(out[:, 0, :]), dim=-1)


def _seed_checkpoint(path, seed: int = 3) -> SeedModule:
    """What the seed's ModelCheckpoint writes (the keys load_from_checkpoint reads)."""
    torch.manual_seed(seed)
    hp = {**SEED_HPARAMS, "beats_ckpt_path": str(build_tiny_beats()), "max_lr": 3e-5}
    module = SeedModule(**hp).eval()
    with torch.no_grad():
        module.tau.fill_(0.07)
    torch.save({"epoch": 4, "global_step": 40, "pytorch-lightning_version": pl.__version__,
                "state_dict": module.state_dict(), "hyper_parameters": hp}, path)
    return module


def _load_seed(path) -> SeedModule:
    return SeedModule.load_from_checkpoint(path, map_location="cpu", strict=True, weights_only=True).eval()


def _compiled_audioret_checkpoint(seed_path, out):
    """An audioret finetune checkpoint of the seed's weights: ``model.`` prefix, torch.compile keys, the
    shared table once, audioret's hyper-parameter names (as finetune --load_ckpt_path then saving)."""
    model = load_finetuned(seed_path, text_model="tiny-roberta")
    state = {}
    for k, v in model.state_dict().items():
        k = k.replace("text_embedding_model.", "text_embedding_model._orig_mod.", 1)
        k = k.replace("audio_embedding_model.model.model.", "audio_embedding_model.model.model._orig_mod.", 1)
        state["model." + k] = v
    hp = {"audio_encoder": "tiny-beats", "text_model": "tiny-roberta", "beats_ckpt_path": None, "max_lr": 3e-5,
          "warmup_epochs": 1.0, "rampdown_epochs": 15.0, "initial_tau": 0.05, "tau_trainable": False,
          "max_seconds": 30.0, "text_dropout": 0.2, "embed_dim": 1024, "checkpoints_path": seed_path.parent}
    torch.save({"epoch": 1, "global_step": 7, "pytorch-lightning_version": pl.__version__, "state_dict": state,
                "hyper_parameters": hp}, out)
    return model


def test_round_trip_seed_audioret_seed(tmp_path):
    seed_path, ours_path, back = tmp_path / "seed.ckpt", tmp_path / "ours.ckpt", tmp_path / "back.ckpt"
    original = _seed_checkpoint(seed_path)
    ours = _compiled_audioret_checkpoint(seed_path, ours_path)
    assert not any(k.startswith("model.") for k in torch.load(seed_path, weights_only=True)["state_dict"])

    run(ExportSeedConfig(checkpoint=ours_path, out=back, beats_ckpt_path=build_tiny_beats()))
    ck = torch.load(back, weights_only=True)  # plain types only
    assert set(ck["hyper_parameters"]) == set(SEED_HPARAMS)
    assert ck["hyper_parameters"]["max_lr"] == 3e-5 and ck["hyper_parameters"]["warmup_epochs"] == 1
    assert isinstance(ck["hyper_parameters"]["checkpoints_path"], str)
    assert ck["hyper_parameters"]["roberta_base"] is False and ck["global_step"] == 7

    reloaded = _load_seed(back)  # strict keys
    want = original.state_dict()
    got = reloaded.state_dict()
    assert set(got) == set(want)
    for k, v in want.items():
        assert torch.equal(got[k], v), k
    wave = torch.randn(16000 * 4) * 0.1
    a0, t0 = original.embed_audio(wave), original.embed_text(CAPTIONS)
    a1, t1 = reloaded.embed_audio(wave), reloaded.embed_text(CAPTIONS)
    assert torch.equal(a0, a1) and torch.equal(t0, t1)
    with torch.no_grad():  # and audioret's own embeddings of the same weights agree with the seed's forward
        torch.testing.assert_close(ours.embed_audio([wave]), a0, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ours.embed_text(CAPTIONS), t0, atol=1e-5, rtol=1e-4)


def test_export_of_a_finetune_run_loads_strictly_in_the_seed(synth_corpus, tmp_path):
    from audioret.finetune.config import FinetuneConfig
    from audioret.finetune.run import run as finetune

    res = finetune(FinetuneConfig(data_path=synth_corpus, audio_encoder="tiny-beats", text_model="tiny-roberta",
                                  n_workers=0, precision="32-true", logging=False, out=tmp_path / "run",
                                  batch_size=2, max_steps=1, limit_train_batches=1, limit_val_batches=0,
                                  test=False, max_lr=1e-3, train_crop="start"))
    ckpt = res["last_checkpoint"]
    out = tmp_path / "seed.ckpt"
    assert main([str(ckpt), str(out), "--beats-ckpt-path", str(build_tiny_beats())]) == 0
    seed = _load_seed(out)
    ours = load_finetuned(ckpt)
    wave = torch.randn(16000 * 3) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(ours.embed_audio([wave]), seed.embed_audio(wave), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ours.embed_text(CAPTIONS), seed.embed_text(CAPTIONS), atol=1e-5, rtol=1e-4)


def test_refusals_are_one_line(tmp_path, capsys):
    seed_path = tmp_path / "seed.ckpt"
    _seed_checkpoint(seed_path)
    out = tmp_path / "x.ckpt"
    out.write_bytes(b"")
    assert main([str(seed_path), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.ckpt"), str(tmp_path / "y.ckpt")]) == 2
    assert "no such file" in capsys.readouterr().err
    ck = torch.load(seed_path, weights_only=True)
    ck["hyper_parameters"] = {**ck["hyper_parameters"], "beats_ckpt_path": None}
    torch.save(ck, tmp_path / "nobeats.ckpt")
    assert main([str(tmp_path / "nobeats.ckpt"), str(tmp_path / "z.ckpt")]) == 2
    assert "--beats-ckpt-path" in capsys.readouterr().err
    ck["hyper_parameters"]["audio_encoder"] = "passt"
    torch.save(ck, tmp_path / "passt.ckpt")
    assert main([str(tmp_path / "passt.ckpt"), str(tmp_path / "p.ckpt")]) == 2
    assert "mixed up" in capsys.readouterr().err
    ck["hyper_parameters"]["audio_encoder"] = "clap"
    torch.save(ck, tmp_path / "clap.ckpt")
    assert main([str(tmp_path / "clap.ckpt"), str(tmp_path / "c.ckpt")]) == 2
    assert "BEATs layout" in capsys.readouterr().err


class OfficialModule(pl.LightningModule):
    """The official baseline's module layout (PaSST under audio_embedding_model.model.model, AudioSet heads
    included) and hyper-parameter reads, with tiny encoders."""

    def __init__(self, **kwargs) -> None:
        super().__init__()
        from audioret.encoders.passt import PaSST, tiny_passt_config

        self.save_hyperparameters(kwargs)
        assert kwargs["s_patchout_t"] >= 0 and kwargs["s_patchout_f"] >= 0 and "beats_ckpt_path" not in kwargs
        passt = PaSST(tiny_passt_config())
        self.audio_embedding_model = nn.Module()
        self.audio_embedding_model.model = nn.Module()
        self.audio_embedding_model.model.model = passt
        self.audio_projection = nn.Linear(passt.cfg.embed_dim, 1024)
        text = build_text_encoder("tiny-roberta")
        self.text_embedding_model = text.model.model if hasattr(text.model, "model") else text.model
        self.text_projection = nn.Linear(self.text_embedding_model.config.hidden_size, 1024)
        self.tau = nn.Parameter(torch.zeros(1) + kwargs["initial_tau"], requires_grad=kwargs["tau_trainable"])


def test_passt_model_exports_for_the_official_module(tmp_path):
    from audioret.finetune.export_seed import OFFICIAL_HPARAMS
    from audioret.models.dual_encoder import build_dual_encoder

    torch.manual_seed(0)
    model = build_dual_encoder({"audio_encoder": "tiny-passt", "text_model": "tiny-roberta"}).eval()
    hp = {"audio_encoder": "tiny-passt", "text_model": "tiny-roberta", "s_patchout_t": 9, "s_patchout_f": 1,
          "beats_ckpt_path": None, "precision": "bf16-mixed"}
    src, out = tmp_path / "ours.ckpt", tmp_path / "official.ckpt"
    torch.save({"epoch": 0, "global_step": 3, "pytorch-lightning_version": pl.__version__, "hyper_parameters": hp,
                "state_dict": {"model." + k: v for k, v in model.state_dict().items()}}, src)
    assert main([str(src), str(out)]) == 0
    ck = torch.load(out, weights_only=True)
    assert set(ck["hyper_parameters"]) == set(OFFICIAL_HPARAMS) and ck["hyper_parameters"]["s_patchout_t"] == 9
    official = OfficialModule.load_from_checkpoint(out, map_location="cpu", strict=True, weights_only=True)
    for k, v in model.state_dict().items():
        assert torch.equal(official.state_dict()[k], v), k
    back = load_finetuned(out, text_model="tiny-roberta")  # and audioret reads the export again
    wave = torch.randn(16000 * 3) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(back.embed_audio([wave]), model.embed_audio([wave]))
