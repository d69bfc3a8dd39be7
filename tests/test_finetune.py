"""finetune with tiny encoders on the synthetic corpus (CPU): learning, frozen vs trainable,
--audio-store == live audio, save/resume/load (incl. compile-style keys), warm start, decode failures."""

from __future__ import annotations

import dataclasses
import logging
import shutil

import pytest
import torch

from audioret.config import to_dict
from audioret.corpora import load_corpus
from audioret.finetune.config import FinetuneConfig
from audioret.finetune.data import (LiveAudio, StoreAudio, TrainPairs, collate_train)
from audioret.finetune.module import FinetuneModule
from audioret.finetune.run import open_audio_store, run

TINY = dict(audio_encoder="tiny-beats", text_model="tiny-roberta", n_workers=0, precision="32-true",
            logging=False)


def tiny_cfg(corpus, **kw) -> FinetuneConfig:
    return FinetuneConfig(data_path=corpus, **{**TINY, **kw})


def make_module(corpus, seed: int = 0, **kw) -> FinetuneModule:
    torch.manual_seed(seed)
    return FinetuneModule(**to_dict(tiny_cfg(corpus, **kw)))


@pytest.fixture(scope="module")
def dev_clips(synth_corpus):
    return load_corpus("clotho", synth_corpus, "dev").clips


def short_items(clips, n: int) -> list[int]:
    """Indices of training pairs of n distinct clips of <= 10 s (one window each: cheap)."""
    pairs = TrainPairs(clips, None).pairs
    out, seen = [], set()
    for i, p in enumerate(pairs):
        if p.clip not in seen and clips[p.clip].duration <= 10:
            out.append(i)
            seen.add(p.clip)
        if len(out) == n:
            break
    return out


def store_items(clips) -> list[int]:
    """Training pairs of the store test: 3 short clips and one 2-window clip."""
    return short_items(clips, 3) + [i for i, p in enumerate(TrainPairs(clips, None).pairs)
                                    if clips[p.clip].duration > 10][:1]


@pytest.fixture(scope="module")
def store_path(synth_corpus, dev_clips, tmp_path_factory):
    """A store of the dev split written directly from the tiny encoder (fp32 window means), as
    extract would: windows = per-window all-token means of the 10 s windows of each clip."""
    from audioret.audio import load_audio, split_windows
    from audioret.encoders.registry import build_audio_encoder
    from audioret.store import create_store

    enc = build_audio_encoder("tiny-beats")
    path = tmp_path_factory.mktemp("ft_store") / "store.zarr"
    dev_clips = [dev_clips[TrainPairs(dev_clips, None).pairs[i].clip] for i in store_items(dev_clips)]
    st = create_store(path, {"audio_encoder": enc.identity})
    frames, means = [], []
    for c in dev_clips:
        wins = split_windows(load_audio(c.path, 16000), enc.window_samples)
        f, m = enc.encode_windows(wins)
        frames.append(f.reshape(-1, f.shape[-1]))
        means.append(m)
    st.plan_audio("dev", [c.clip_id for c in dev_clips], [len(f) for f in frames], [len(m) for m in means],
                  dim=enc.dim, dtype="float32", durations=[c.duration for c in dev_clips])
    with st.writer("dev", "audio", 0) as w:
        for i, (f, m) in enumerate(zip(frames, means)):
            w.put(i, frames=f.numpy(), windows=m.numpy())
    return path


def steps(module: FinetuneModule, batch, n: int, lr: float = 1e-4) -> list[float]:
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    module.train()
    losses = []
    for _ in range(n):
        loss = module.batch_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("trainable", [False, True])
def test_training_lowers_loss_and_moves_encoder_only_when_trainable(synth_corpus, dev_clips, trainable):
    module = make_module(synth_corpus, audio_trainable=trainable, text_dropout=0.0)
    ds = TrainPairs(dev_clips, LiveAudio())
    batch = collate_train([ds[i] for i in short_items(dev_clips, 4)])
    beats = module.model.audio_encoder.model
    before_audio = {k: v.clone() for k, v in beats.state_dict().items()}
    before_text = {k: v.clone() for k, v in module.model.text_embedding_model.state_dict().items()}
    losses = steps(module, batch, 4)
    # tiny random RoBERTa's <s> token starts identical for every caption: learning is slow but steady
    assert losses[-1] < losses[0]
    assert beats.training == trainable  # frozen BEATs stays in eval mode (no layer drop) under .train()
    moved = any(not torch.equal(before_audio[k], v) for k, v in beats.state_dict().items())
    assert moved == trainable
    assert any(not torch.equal(before_text[k], v)
               for k, v in module.model.text_embedding_model.state_dict().items())


def test_audio_store_gives_the_live_audio_run(synth_corpus, dev_clips, store_path):
    cfg = tiny_cfg(synth_corpus, audio_store=store_path, text_dropout=0.0)
    items = store_items(dev_clips)
    live = collate_train([TrainPairs(dev_clips, LiveAudio())[i] for i in items])
    table = open_audio_store(cfg, make_module(synth_corpus).model.audio_encoder.identity).audio("dev")
    stored = collate_train([TrainPairs(dev_clips, StoreAudio(table))[i] for i in items])
    assert live.audio.counts == stored.audio.counts and max(live.audio.counts) == 2
    a, b = make_module(synth_corpus, seed=1, text_dropout=0.0), make_module(synth_corpus, seed=1, text_dropout=0.0)
    with torch.no_grad():
        pooled_live = a.model.pooled_audio(live.audio.values, live.audio.counts)
        from audioret.models import segment_mean
        from audioret.models.dual_encoder import pad_windows
        pooled_store = segment_mean(*pad_windows(stored.audio.values, stored.audio.counts))
    torch.testing.assert_close(pooled_store, pooled_live, atol=1e-5, rtol=0)
    la, lb = steps(a, live, 3), steps(b, stored, 3)
    assert la == pytest.approx(lb, abs=1e-5)
    for (k, v), (_, w) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        torch.testing.assert_close(v, w, atol=1e-5, rtol=0, msg=k)


def test_audio_store_of_another_encoder_is_refused(synth_corpus, store_path):
    from audioret.store import StoreMismatchError

    module = make_module(synth_corpus)
    ident = dict(module.model.audio_encoder.identity)
    ident["checkpoint_sha256"] = "0" * 64
    with pytest.raises(StoreMismatchError, match="checkpoint_sha256"):
        open_audio_store(tiny_cfg(synth_corpus, audio_store=store_path), ident)


def test_save_resume_load_round_trip(synth_corpus, tmp_path):
    from audioret.models.dual_encoder import load_finetuned

    common = dict(batch_size=2, limit_train_batches=3, limit_val_batches=0, test=False, text_dropout=0.0,
                  max_lr=1e-3, warmup_epochs=0.5, rampdown_epochs=1.0, max_epochs=1, seed=5,
                  checkpoint_every_n_steps=1, train_crop="start")
    full = run(tiny_cfg(synth_corpus, out=tmp_path / "full", max_steps=3, **common))
    part = run(tiny_cfg(synth_corpus, out=tmp_path / "part", max_steps=2, **common))
    # last.ckpt is refreshed every step (checkpoint_every_n_steps=1): here after step 2 of 3, mid-epoch
    assert part["global_step"] == 2 and part["last_checkpoint"].endswith("last.ckpt")
    mid = tmp_path / "mid.ckpt"
    shutil.copy(part["last_checkpoint"], mid)  # the resumed run refreshes last.ckpt in place
    assert torch.load(mid, weights_only=False)["global_step"] == 2
    resumed = run(tiny_cfg(synth_corpus, out=tmp_path / "part", max_steps=3, resume_ckpt_path=mid, **common))
    assert resumed["global_step"] == full["global_step"] == 3
    sd_full = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=False)
    sd_res = torch.load(tmp_path / "part" / "checkpoints" / "last.ckpt", weights_only=False)
    assert sd_full["global_step"] == sd_res["global_step"] == 3
    for k, v in sd_full["state_dict"].items():  # same data position, optimizer state and LR schedule
        torch.testing.assert_close(sd_res["state_dict"][k], v, atol=1e-5, rtol=1e-4, msg=k)
    hp = sd_full["hyper_parameters"]
    assert hp["audio_encoder"] == "tiny-beats" and hp["max_steps"] == 3 and hp["batch_size"] == 2

    # inference loader, also from a checkpoint with torch.compile-style key prefixes
    model = load_finetuned(mid)
    caps, wave = ["a dog barks", "rain falls"], [torch.randn(16000 * 3) * 0.1]
    with torch.no_grad():
        t, a = model.embed_text(caps), model.embed_audio(wave)
    assert t.shape == (2, 1024) and torch.allclose(t.norm(dim=-1), torch.ones(2))
    ck = torch.load(mid, weights_only=False)
    ck["state_dict"] = {k.replace("model.text_embedding_model.", "model.text_embedding_model._orig_mod.")
                         .replace("audio_embedding_model.model.model.", "audio_embedding_model.model.model._orig_mod."): v
                        for k, v in ck["state_dict"].items()}
    assert any("_orig_mod." in k for k in ck["state_dict"])
    torch.save(ck, tmp_path / "compiled.ckpt")
    compiled = load_finetuned(tmp_path / "compiled.ckpt")
    with torch.no_grad():
        torch.testing.assert_close(compiled.embed_text(caps), t)
        torch.testing.assert_close(compiled.embed_audio(wave), a)
    # and the Lightning module loads it too (resume/--load_ckpt_path path)
    m2 = FinetuneModule.load_from_checkpoint(tmp_path / "compiled.ckpt", map_location="cpu")
    torch.testing.assert_close(m2.model.audio_projection.weight, model.audio_projection.weight)


def test_full_run_reports_best_and_last_with_multi_match(synth_corpus, tmp_path):
    res = run(tiny_cfg(synth_corpus, out=tmp_path / "r", batch_size=2, batch_size_eval=12, max_epochs=1,
                       limit_train_batches=2, limit_val_batches=1, max_lr=1e-3))
    for key in ("test_last", "test_best"):
        assert {"R@1", "R@10", "mAP@10", "mAP@10_multi", "mAP@16_multi"} <= set(res[key])
    assert res["multi_match_file"].endswith("metadata_eval.csv") and str(synth_corpus) in res["multi_match_file"]
    assert (tmp_path / "r" / "metrics.json").is_file() and res["best_checkpoint"].endswith("epoch=0.ckpt")


def test_undecodable_clip_is_logged_and_replaced(dev_clips, tmp_path, caplog):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    clips = [dataclasses.replace(dev_clips[0], path=bad)] + list(dev_clips[1:4])
    ds = TrainPairs(clips, LiveAudio(), seed=1)
    with caplog.at_level(logging.WARNING):
        item = ds[0]  # pair 0 belongs to the broken clip
    assert item["clip"] != 0 and item["audio"].shape[-1] == 160000
    assert "broken.wav" in caplog.text
    only_bad = TrainPairs(clips[:1], LiveAudio(), retries=2)
    with pytest.raises(RuntimeError, match="3 clips in a row failed"):
        only_bad[0]


def test_warm_start_from_linear_heads(synth_corpus, tmp_path):
    from audioret.finetune.warm_start import warm_start_projections
    from audioret.models import HeadConfig, RetrievalHeads, save_heads

    module = make_module(synth_corpus)
    m = module.model
    cfg = HeadConfig(audio_dim=m.audio_encoder.dim, text_dim=m.text_encoder.dim, embed_dim=1024,
                     audio_pooling="segment-mean", text_pooling="first", projection="linear")
    heads = RetrievalHeads(cfg)
    save_heads(tmp_path / "heads.pt", heads)
    warm_start_projections(m, tmp_path / "heads.pt")
    assert torch.equal(m.audio_projection.weight, heads.audio.proj.weight)
    assert torch.equal(m.text_projection.bias, heads.text.proj.bias)
    save_heads(tmp_path / "small.pt", RetrievalHeads(dataclasses.replace(cfg, embed_dim=32)))
    with pytest.raises(ValueError, match=r"\(32, 192\).*\(1024, 192\)"):
        warm_start_projections(m, tmp_path / "small.pt")
