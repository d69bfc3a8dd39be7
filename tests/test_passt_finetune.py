"""finetune with PaSST (tiny-passt, synthetic corpus, CPU): end to end with structured patchout in
training, frozen audio fed from a PaSST feature store, and the saved run reloading without the
PaSST file."""

from __future__ import annotations

import pytest
import torch

from audioret.config import to_dict
from audioret.corpora import load_corpus
from audioret.finetune.config import FinetuneConfig
from audioret.finetune.data import LiveAudio, StoreAudio, TrainPairs, collate_train
from audioret.finetune.module import FinetuneModule
from audioret.finetune.run import open_audio_store, run

TINY = dict(audio_encoder="tiny-passt", text_model="tiny-roberta", n_workers=0, precision="32-true",
            logging=False)
LIVE = dict(sample_rate=32000, window_samples=320000)


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("AUDIORET_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


def tiny_cfg(corpus, **kw) -> FinetuneConfig:
    return FinetuneConfig(data_path=corpus, **{**TINY, **kw})


@pytest.fixture(scope="module")
def dev_clips(synth_corpus):
    return load_corpus("clotho", synth_corpus, "dev").clips


def items(clips, n_short: int, n_long: int) -> list[int]:
    pairs = TrainPairs(clips, None).pairs
    short, long_, seen = [], [], set()
    for i, p in enumerate(pairs):
        if p.clip in seen:
            continue
        seen.add(p.clip)
        (short if clips[p.clip].duration <= 10 else long_).append(i)
    return short[:n_short] + long_[:n_long]


def test_trainable_passt_learns_with_patchout_and_frozen_heads(synth_corpus, dev_clips):
    torch.manual_seed(0)
    module = FinetuneModule(**to_dict(tiny_cfg(synth_corpus, audio_trainable=True, text_dropout=0.0)))
    enc = module.model.audio_encoder
    assert enc.name == "tiny-passt" and module.model.sample_rate == 32000
    batch = collate_train([TrainPairs(dev_clips, LiveAudio(**LIVE))[i] for i in items(dev_clips, 4, 0)])
    passt = enc.model
    head_before = {k: v.clone() for k, v in passt.state_dict().items() if k.startswith("head")}
    before = {k: v.clone() for k, v in passt.state_dict().items()}
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=3e-4, weight_decay=0.0)
    module.train()
    assert passt.training and passt.mel.training
    with torch.no_grad():   # training mode: 15 of 62 time columns dropped
        assert enc.encode(batch.audio.values[:1])[0].shape[1] == 62 - 15
    losses = []
    for _ in range(4):
        loss = module.batch_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert not torch.equal(before["blocks.0.attn.qkv.weight"], passt.state_dict()["blocks.0.attn.qkv.weight"])
    assert all(torch.equal(v, passt.state_dict()[k]) for k, v in head_before.items())  # unused heads frozen
    module.eval()
    with torch.no_grad():
        assert enc.encode(batch.audio.values[:1])[0].shape[1] == 62


def test_frozen_finetune_from_a_passt_store_equals_live_audio(synth_corpus, dev_clips, tmp_path):
    from audioret.extract import ExtractConfig
    from audioret.extract import run as extract

    store = tmp_path / "store.zarr"
    extract(ExtractConfig(corpus="clotho", data_path=synth_corpus, store=store, splits=("dev", "val"),
                          passes=("audio",), audio_encoder="tiny-passt", num_workers=0, progress=False,
                          dtype="float32"))
    cfg = tiny_cfg(synth_corpus, audio_store=store, text_dropout=0.0)
    torch.manual_seed(1)
    module = FinetuneModule(**to_dict(cfg))
    table = open_audio_store(cfg, module.model.audio_encoder.identity).audio("dev")
    chosen = items(dev_clips, 2, 1)
    live = collate_train([TrainPairs(dev_clips, LiveAudio(**LIVE))[i] for i in chosen])
    stored = collate_train([TrainPairs(dev_clips, StoreAudio(table))[i] for i in chosen])
    assert live.audio.counts == stored.audio.counts and max(live.audio.counts) == 2
    module.train()   # frozen: PaSST stays in eval mode (no patchout, no jitter)
    with torch.no_grad():
        a = module.embed_audio_batch(live.audio)
        b = module.embed_audio_batch(stored.audio)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # the whole stage on the store: runs, keeps the encoder frozen, writes a loadable checkpoint
    res = run(tiny_cfg(synth_corpus, audio_store=store, out=tmp_path / "run", batch_size=4, max_epochs=1,
                       limit_train_batches=2, limit_val_batches=1, test=False, max_lr=1e-3))
    assert res


def test_passt_run_saves_a_checkpoint_that_loads_without_the_passt_file(synth_corpus, tmp_path):
    from audioret.models.dual_encoder import load_finetuned

    out = tmp_path / "run"
    run(tiny_cfg(synth_corpus, out=out, audio_trainable=True, batch_size=2, max_steps=2, max_epochs=1,
                 limit_train_batches=2, limit_val_batches=0, test=False, max_lr=1e-3, s_patchout_t=10))
    ckpt = out / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    raw = torch.load(ckpt, weights_only=True, mmap=True)
    assert raw["hyper_parameters"]["audio_encoder"] == "tiny-passt"
    assert "model.audio_embedding_model.model.model.time_new_pos_embed" in raw["state_dict"]
    model = load_finetuned(ckpt)     # PaSST built from the checkpoint's own shapes
    assert model.audio_encoder.model.cfg.s_patchout_t == 10
    sd = raw["state_dict"]
    assert torch.equal(model.audio_encoder.model.state_dict()["blocks.1.mlp.fc2.weight"],
                       sd["model.audio_embedding_model.model.model.blocks.1.mlp.fc2.weight"])
    wave = torch.randn(32000 * 12) * 0.1
    with torch.inference_mode():
        emb = model.embed_audio([wave])
    assert emb.shape == (1, 1024) and torch.isfinite(emb).all()


def test_passt_without_weights_is_one_clear_error(synth_corpus, tmp_path):
    from audioret.finetune.cli import main

    assert main(["--data_path", str(synth_corpus), "--audio-encoder", "passt", "--text-model", "tiny-roberta",
                 "--out", str(tmp_path / "x")]) == 2


def test_a_missing_passt_file_names_the_finetune_flag(synth_corpus, tmp_path, capsys):
    from audioret.finetune.cli import main

    missing = tmp_path / "nowhere" / "passt.pt"
    argv = ["--data_path", str(synth_corpus), "--audio-encoder", "passt", "--text-model", "tiny-roberta",
            "--out", str(tmp_path / "x"), "--passt_ckpt_path", str(missing)]
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"--passt_ckpt_path {missing}: no such file" in errors[0]
    assert "--audio-checkpoint" not in errors[0]


def test_a_beats_store_is_refused_by_a_passt_run_naming_both(synth_corpus, tmp_path, capsys):
    from audioret.extract import ExtractConfig
    from audioret.extract import run as extract
    from audioret.finetune.cli import main

    store = tmp_path / "beats.zarr"
    extract(ExtractConfig(corpus="clotho", data_path=synth_corpus, store=store, splits=("val",), passes=("audio",),
                          audio_encoder="tiny-beats", num_workers=0, progress=False))
    assert main(["--data_path", str(synth_corpus), "--audio-encoder", "tiny-passt", "--text-model", "tiny-roberta",
                 "--audio-store", str(store), "--out", str(tmp_path / "x"), "--n_workers", "0"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"--audio-store {store} holds features of audio encoder 'tiny-beats' (beats, " \
        "16000 Hz), but the run needs 'tiny-passt' (passt, 32000 Hz)" in errors[0]
