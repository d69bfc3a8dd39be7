"""Every training run keeps a per-step / per-epoch log (what ``audioret report`` draws): train-heads
and finetune write ``logs/.../metrics.csv`` with loss, lr and temperature in every epoch, even when an
epoch is shorter than the logging interval; an optional logger whose package is missing is one line
with the install hint and exit 2, before any data loads."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

from audioret.train_heads.config import TrainHeadsConfig
from audioret.train_heads.run import Splits, run as run_heads
from audioret.train_heads.synthetic import synthetic_split


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def read_log(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def epochs_with(rows: list[dict[str, str]], key: str) -> set[int]:
    return {int(r["epoch"]) for r in rows if r.get(key) not in (None, "")}


@pytest.fixture
def no_optional_loggers(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith(("wandb", "tensorboard")) else real(name, *a))


def test_heads_log_loss_lr_tau_every_epoch_even_with_short_epochs(tmp_path):
    splits = Splits(synthetic_split("dev", 96, seed=1), {"val": synthetic_split("val", 32, seed=2)}, {"path": "memory"})
    cfg = TrainHeadsConfig(out=tmp_path / "h", max_epochs=3, warmup_epochs=1, rampdown_epochs=2, embed_dim=32,
                           hidden_dim=64, batch_size=96, progress=False, floor="none", test=None)  # 5 steps/epoch
    run_heads(cfg, splits)
    logs = sorted((tmp_path / "h" / "logs").glob("version_*/metrics.csv"))
    assert len(logs) == 1
    rows = read_log(logs[0])
    for key in ("train/loss", "train/lr", "train/tau", "val/mAP@10"):
        assert epochs_with(rows, key) == {0, 1, 2}, key  # old code: no train row before step 10


def test_heads_missing_logger_package_is_one_line_before_data(tmp_path, capsys, no_optional_loggers):
    from audioret.train_heads.cli import main

    rc = main(["--store", str(tmp_path / "absent.zarr"), "--out", str(tmp_path / "o"), "--logger", "wandb",
               "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "--logger wandb" in err and "pip install 'audioret[wandb]'" in err and "absent.zarr" not in err
    assert not (tmp_path / "o").exists()


def test_finetune_missing_logger_package_is_one_line(synth_corpus, tmp_path, capsys, no_optional_loggers):
    from audioret.finetune.cli import main

    rc = main(["--data_path", str(synth_corpus), "--out", str(tmp_path / "f"), "--audio-encoder", "tiny-beats",
               "--text-model", "tiny-roberta", "--logger", "tensorboard", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "pip install 'audioret[tensorboard]'" in err
    assert not (tmp_path / "f").exists()


def test_finetune_logs_loss_lr_tau_per_step_and_val_per_epoch(synth_corpus, tmp_path):
    from audioret.finetune.config import FinetuneConfig
    from audioret.finetune.run import run

    run(FinetuneConfig(data_path=synth_corpus, out=tmp_path / "f", audio_encoder="tiny-beats",
                       text_model="tiny-roberta", n_workers=0, precision="32-true", batch_size=4, batch_size_eval=12,
                       max_epochs=2, limit_train_batches=3, limit_val_batches=1, max_lr=1e-3, test=False,
                       progress=False))
    rows = read_log(tmp_path / "f" / "logs" / "metrics.csv")
    for key in ("train/loss", "train/lr", "train/tau"):
        assert len([r for r in rows if r.get(key)]) == 6, key  # every step (old code: every 50th, none here)
    assert epochs_with(rows, "val/mAP@10") == {0, 1}
