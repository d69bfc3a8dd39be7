"""finetune: seed-compatible flags, config round trip, pure policies, resumable batch order."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from audioret.config import from_dict, to_dict
from audioret.finetune.cli import parse_args
from audioret.finetune.config import FinetuneConfig
from audioret.finetune.data import ResumableBatchSampler, epoch_permutation
from audioret.finetune.run import choose_precision, parse_devices, store_expectation, validate

# baseline.md 10.1 (official) + the BEATs copy's --precision and --beats_ckpt_path
SEED_DEFAULTS = dict(devices="auto", compile=False, logging=True, resume_ckpt_path=None,
                     load_ckpt_path=None, seed=21208, batch_size=64, batch_size_eval=64, max_epochs=20,
                     warmup_epochs=1, rampdown_epochs=15, max_lr=2e-5, min_lr=1e-7, initial_tau=0.05,
                     tau_trainable=False, roberta_base=False, wavcaps=False, audiocaps=False,
                     ablate_clean_setup=True, data_path=Path("data"), checkpoints_path=Path("checkpoints"),
                     train=True, test=True, precision="16-mixed", beats_ckpt_path=None)


def test_defaults_are_the_seeds():
    cfg = parse_args([])
    got = {k: getattr(cfg, k) for k in SEED_DEFAULTS}
    assert got == SEED_DEFAULTS


def test_loader_workers_default_fits_the_machine_and_every_spelling_works(monkeypatch):
    """The seed's 16 workers, capped at the cores this process may use (16 processes on 2 cores thrash)."""
    import os

    from audioret.finetune import config as fc

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert parse_args([]).n_workers == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert parse_args([]).n_workers == fc.SEED_WORKERS == 16
    for flag in ("--num-workers", "--num_workers", "--n-workers", "--n_workers"):
        assert parse_args([flag, "3"]).n_workers == 3, flag


def test_seed_command_line_parses_in_both_spellings():
    snake = ["--data_path", "/d", "--checkpoints_path", "/c", "--seed", "13", "--batch_size", "4",
             "--batch_size_eval", "4", "--max_epochs", "3", "--warmup_epochs", "2", "--rampdown_epochs", "5",
             "--max_lr", "5e-6", "--min_lr", "1e-8", "--initial_tau", "0.07", "--tau_trainable", "--compile",
             "--audiocaps", "--wavcaps", "--no-ablate_clean_setup", "--roberta_base", "--devices", "2",
             "--n_workers", "0", "--precision", "bf16-mixed", "--no-train", "--no-test",
             "--load_ckpt_path", "/x.ckpt", "--resume_ckpt_path", "/y.ckpt", "--beats_ckpt_path", "/b.pt"]
    kebab = [a.replace("_", "-") if a.startswith("--") else a for a in snake]
    a, b = parse_args(snake), parse_args(kebab)
    assert a == b
    assert (a.seed, a.batch_size, a.max_lr, a.tau_trainable, a.ablate_clean_setup, a.train, a.test) == \
        (13, 4, 5e-6, True, False, False, False)
    assert a.beats_ckpt_path == Path("/b.pt") and a.resume_ckpt_path == Path("/y.ckpt")
    assert a.devices == "2" and a.precision == "bf16-mixed" and a.n_workers == 0


def test_our_flags_and_config_round_trip():
    cfg = parse_args(["--audio-encoder", "tiny-beats", "--text-model", "tiny-roberta", "--audio-store", "/s",
                      "--init-heads", "/h.pt", "--max-steps", "7", "--limit-train-batches", "3", "--out", "/o"])
    assert (cfg.audio_encoder, cfg.text_model, cfg.max_steps, cfg.limit_train_batches) == \
        ("tiny-beats", "tiny-roberta", 7, 3)
    assert from_dict(FinetuneConfig, to_dict(cfg)) == cfg
    with pytest.raises(SystemExit):
        parse_args(["--audio-encoder", "no-such-encoder"])
    assert parse_args(["--audio-encoder", "passt", "--passt_ckpt_path", "/p.pt"]).passt_ckpt_path.name == "p.pt"


def test_validate_refuses_contradictions():
    base = FinetuneConfig(audio_encoder="tiny-beats")
    validate(base)
    with pytest.raises(ValueError, match="audio-trainable"):
        validate(dataclasses.replace(base, audio_store=Path("s"), audio_trainable=True))
    with pytest.raises(ValueError, match="beats_ckpt_path"):
        validate(dataclasses.replace(base, audio_encoder="beats"))


def test_small_policies():
    assert choose_precision("16-mixed", cuda=False) == "32-true"
    assert choose_precision("16-mixed", cuda=True) == "16-mixed"
    assert parse_devices("auto") == "auto" and parse_devices("4") == 4 and parse_devices("0,1") == [0, 1]
    ident = {"name": "tiny-beats", "architecture": "beats", "config": {"a": 1}, "checkpoint": "/moved/x.pt",
             "checkpoint_sha256": "ab", "sample_rate": 16000, "window_samples": 160000}
    exp = store_expectation(ident)["audio_encoder"]
    assert "checkpoint" not in exp and exp["checkpoint_sha256"] == "ab"


def _drain(sampler, n=None):
    out = []
    for i, b in enumerate(sampler):
        if n is not None and i == n:
            break
        out.append(b)
    return out


def test_sampler_shards_and_resumes_mid_epoch():
    full = [ResumableBatchSampler(50, 4, seed=3, world=2, rank=r) for r in (0, 1)]
    b0, b1 = _drain(full[0]), _drain(full[1])
    assert len(b0) == len(full[0]) == 6
    seen = [i for b in b0 + b1 for i in b]
    assert len(seen) == len(set(seen)) == 48  # disjoint over ranks, drop_last
    # a run that stops after 2 batches and resumes gives the remaining batches of the same epoch
    s = ResumableBatchSampler(50, 4, seed=3, world=2, rank=0)
    _drain(s, 2)
    s.consumed = 2  # what the module sets at the start of each batch
    state = s.state_dict()
    r = ResumableBatchSampler(50, 4, seed=3, world=2, rank=0)
    r.load_state_dict(state)
    r.set_epoch(0)
    assert _drain(r) == b0[2:]
    r.set_epoch(1)  # the next epoch is a new, full shuffle
    assert len(_drain(r)) == 6
    assert epoch_permutation(50, 3, 1) != epoch_permutation(50, 3, 0)
