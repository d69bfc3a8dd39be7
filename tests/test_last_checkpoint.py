"""last.ckpt is the state after the latest epoch (not the best one), in finetune and train-heads, and
resuming from it continues at the right epoch and step; failed finetune starts leave no run folder.

A zero learning rate makes validation flat, so the best checkpoint stays at epoch 0 (ties keep the
first) while training goes on: best != last in seconds (Lightning 2.6's save_last=True wrote last.ckpt
only with a new best, so last.ckpt held epoch 0 here).
"""

from __future__ import annotations

import csv
import logging

import pytest
import torch

from audioret.finetune.config import FinetuneConfig
from audioret.finetune.run import run as finetune
from audioret.models import load_heads
from audioret.models import progress as progress_mod

FLAT = dict(audio_encoder="tiny-beats", text_model="tiny-roberta", n_workers=0, precision="32-true",
            batch_size=2, batch_size_eval=4, limit_train_batches=1, limit_val_batches=1, test=False,
            max_lr=0.0, min_lr=0.0, text_dropout=0.0, seed=3, train_crop="start")


def read_ckpt(path) -> tuple[int, int]:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    return ck["epoch"], ck["global_step"]


def epoch_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == progress_mod.__name__]


@pytest.fixture
def plain_progress(monkeypatch):
    """Output is not a terminal (as in a SLURM log): one log line per epoch."""
    monkeypatch.setattr(progress_mod, "is_terminal", lambda stream=None: False)


def test_finetune_last_is_the_latest_epoch_and_resumes_there(synth_corpus, tmp_path, caplog, plain_progress):
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        first = finetune(FinetuneConfig(data_path=synth_corpus, out=out, max_epochs=3, **FLAT))
    ckpts = out / "checkpoints"
    assert first["best_checkpoint"].endswith("epoch=0.ckpt")  # flat validation: the first epoch stays best
    assert read_ckpt(ckpts / "epoch=0.ckpt") == (0, 1)
    assert read_ckpt(ckpts / "last.ckpt") == (2, 3)  # after the 3rd epoch (0-based 2), 3 steps
    lines = epoch_lines(caplog)
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3 (step 1)", "epoch 2/3 (step 2)", "epoch 3/3 (step 3)"]
    assert all("val mAP@10" in line and "ETA" in line for line in lines)
    rows_before = list(csv.DictReader(open(out / "logs" / "metrics.csv")))

    caplog.clear()
    with caplog.at_level(logging.INFO):
        resumed = finetune(FinetuneConfig(data_path=synth_corpus, out=out, max_epochs=4,
                                          resume_ckpt_path=ckpts / "last.ckpt", **FLAT))
    # exactly one more epoch ran, the 4th, at step 4 (from epoch 0 it would be three epochs)
    assert [line.split(":")[0] for line in epoch_lines(caplog)] == ["epoch 4/4 (step 4)"]
    assert resumed["global_step"] == 4 and read_ckpt(ckpts / "last.ckpt") == (3, 4)
    assert resumed["best_checkpoint"].endswith("epoch=0.ckpt")  # the best survives the resume
    rows_after = list(csv.DictReader(open(out / "logs" / "metrics.csv")))
    assert len(rows_after) > len(rows_before)  # appended: the first run's epochs are still there
    assert [r["step"] for r in rows_after[:len(rows_before)]] == [r["step"] for r in rows_before]


def test_train_heads_last_is_the_latest_epoch_and_a_rerun_replaces_it(tmp_path, caplog, plain_progress):
    from audioret.train_heads.config import TrainHeadsConfig
    from audioret.train_heads.run import Splits, run
    from audioret.train_heads.synthetic import synthetic_split

    splits = Splits(synthetic_split("dev", 64, seed=1), {"val": synthetic_split("val", 24, seed=2)},
                    {"path": "memory"})
    cfg = TrainHeadsConfig(out=tmp_path / "h", max_epochs=3, embed_dim=16, hidden_dim=32, batch_size=32,
                           max_lr=0.0, min_lr=0.0, dropout=0.0, logger="none", floor="none", test=None)
    with caplog.at_level(logging.INFO):
        [result] = run(cfg, splits)
    ckpts = cfg.out / "checkpoints"
    steps = read_ckpt(ckpts / "last.ckpt")[1] // 3
    assert steps > 0 and read_ckpt(ckpts / "epoch=0.ckpt") == (0, steps)  # best: the first (flat) epoch
    assert read_ckpt(ckpts / "last.ckpt") == (2, 3 * steps)
    assert load_heads(ckpts / "last.ckpt") is not None  # the head loader reads it
    info = load_heads(cfg.out / "heads.pt").checkpoint_info  # heads.pt: the best epoch's, as before
    assert info["metrics"]["val/mAP@10"] == pytest.approx(result.metrics["val/mAP@10"])
    lines = epoch_lines(caplog)
    assert len(lines) == 3 and all(f"epoch {e}/3" in line and "val mAP@10" in line
                                   for e, line in zip((1, 2, 3), lines))
    assert result.name == "h"  # the single run's row is named after its folder, not "run"

    (ckpts / "epoch=7.ckpt").write_bytes((ckpts / "epoch=0.ckpt").read_bytes())  # an older run's best
    (ckpts / "last_good.ckpt").write_bytes(b"a user's own file")
    from audioret.train_heads.module import HeadsModule

    def broken_step(self, batch, batch_idx):
        raise RuntimeError("killed mid-rerun")

    with pytest.MonkeyPatch.context() as mp:  # a rerun that dies leaves the earlier run's files alone
        mp.setattr(HeadsModule, "training_step", broken_step)
        with pytest.raises(RuntimeError, match="killed mid-rerun"):
            run(TrainHeadsConfig(**{**cfg.__dict__, "max_epochs": 2}), splits)
    assert {"epoch=0.ckpt", "epoch=7.ckpt", "last.ckpt"} <= {p.name for p in ckpts.iterdir()}
    assert read_ckpt(ckpts / "last.ckpt") == (2, 3 * steps)

    run(TrainHeadsConfig(**{**cfg.__dict__, "max_epochs": 2}), splits)  # rerun into the same --out
    assert sorted(p.name for p in ckpts.iterdir()) == ["epoch=0.ckpt", "last.ckpt", "last_good.ckpt"]  # no -v1
    assert read_ckpt(ckpts / "last.ckpt") == (1, 2 * steps)


def test_failed_finetune_starts_leave_no_run_folder(synth_corpus, tmp_path, monkeypatch):
    """Bad flags, missing data or checkpoint: no ``checkpoints/finetune-<time>/`` (or --out) left behind,
    even when the failure comes from inside Lightning's fit (too few items for one batch)."""
    monkeypatch.chdir(tmp_path)  # the default --checkpoints_path is relative: checkpoints/
    from audioret.corpora.base import CorpusError

    cases = [(dict(data_path=tmp_path / "no_data"), CorpusError),
             (dict(data_path=synth_corpus, resume_ckpt_path=tmp_path / "none.ckpt"), FileNotFoundError),
             (dict(data_path=synth_corpus, audio_store=tmp_path / "s.zarr", audio_trainable=True), ValueError),
             (dict(data_path=synth_corpus, resume_ckpt_path=tmp_path / "bad.ckpt"), ValueError),
             (dict(data_path=synth_corpus, batch_size=10_000), ValueError)]
    (tmp_path / "bad.ckpt").write_bytes(b"half a checkpoint")
    for kw, error in cases:
        with pytest.raises(error):
            finetune(FinetuneConfig(**{**FLAT, **kw}))
        assert not (tmp_path / "checkpoints").exists(), kw
    with pytest.raises(ValueError):  # an explicit --out that did not exist is removed too
        finetune(FinetuneConfig(**{**FLAT, "data_path": synth_corpus, "batch_size": 10_000,
                                   "out": tmp_path / "runs" / "x"}))
    assert not (tmp_path / "runs").exists()
    kept = tmp_path / "mine"
    kept.mkdir()
    with pytest.raises(ValueError):  # a folder that existed before is the user's: kept
        finetune(FinetuneConfig(**{**FLAT, "data_path": synth_corpus, "batch_size": 10_000, "out": kept}))
    assert kept.is_dir()


def test_a_run_that_trained_keeps_its_folder_when_it_fails_later(tmp_path):
    """Only a failed *start* is cleaned up: a failure after optimizer steps (say an out-of-memory error
    an hour into the first epoch) keeps config.json and the logs, even before any checkpoint."""
    from audioret.finetune.run import created_run_folder

    steps = {"n": 0}
    out = tmp_path / "runs" / "ft"
    with pytest.raises(MemoryError):
        with created_run_folder(out, started=lambda: steps["n"] > 0):
            (out / "config.json").write_text("{}")
            steps["n"] = 120
            raise MemoryError("CUDA out of memory")
    assert (out / "config.json").is_file()
    out2 = tmp_path / "runs2" / "ft"
    with pytest.raises(ValueError):
        with created_run_folder(out2, started=lambda: False):
            raise ValueError("bad start")
    assert not (tmp_path / "runs2").exists()
