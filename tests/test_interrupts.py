"""Ctrl-C during train-heads or finetune: one line naming what was kept, exit 130, no traceback.
Lightning's fit handles Ctrl-C itself and raises SystemExit(1); the CLIs still report the interrupt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from audioret.errors import is_interrupt, watch_interrupt


def test_watch_interrupt_sees_ctrl_c_turned_into_system_exit():
    with watch_interrupt() as seen:
        assert not seen()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        assert seen() and is_interrupt(SystemExit(1), seen)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    with watch_interrupt() as seen:
        assert not is_interrupt(SystemExit(1), seen) and is_interrupt(KeyboardInterrupt(), seen)


def _interrupt_after_an_epoch(argv: list[str], cwd) -> tuple[int, str]:
    """Start the command, send SIGINT once its second epoch line appears (the first epoch's
    checkpoint is written by then), and return (exit status, stderr)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(cwd / "err.log", "w") as err_file:
        proc = subprocess.Popen([sys.executable, "-m", "audioret", *argv], cwd=cwd, env=env,
                                stdout=subprocess.DEVNULL, stderr=err_file, text=True)
        deadline = time.monotonic() + 240
        while proc.poll() is None and "epoch 2/" not in (cwd / "err.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is not None:
            pytest.skip(f"the run ended (rc {proc.returncode}) before its second epoch line: nothing to interrupt")
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(120)
    return rc, (cwd / "err.log").read_text()


def test_ctrl_c_during_finetune_is_one_line_naming_the_checkpoint_to_resume(synth_corpus, tmp_path):
    out = tmp_path / "ft"
    rc, err = _interrupt_after_an_epoch(
        ["finetune", "--data_path", str(synth_corpus), "--audio-encoder", "tiny-beats", "--text-model",
         "tiny-roberta", "--batch_size", "4", "--batch_size_eval", "4", "--max_epochs", "500", "--n_workers", "0",
         "--out", str(out), "--no-test"], tmp_path)
    assert rc == 130, err
    last_line = err.strip().splitlines()[-1]
    assert last_line == (f"audioret finetune: stopped by Ctrl-C; resume with --resume_ckpt_path {out}/checkpoints/"
                         "last.ckpt (the latest completed epoch, or --checkpoint_every_n_steps step)"), err
    assert "Traceback" not in err
    assert (out / "checkpoints" / "last.ckpt").is_file()


def test_train_heads_reports_ctrl_c_that_lightning_turned_into_system_exit(monkeypatch, tmp_path, capsys):
    from audioret.train_heads import cli

    def lightning_like_run(cfg):  # Lightning: KeyboardInterrupt -> graceful shutdown -> exit(1)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            raise SystemExit(1) from None

    monkeypatch.setattr("audioret.train_heads.run.run", lightning_like_run)
    assert cli.main(["--store", str(tmp_path / "s.zarr"), "--out", str(tmp_path / "h")]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("audioret train-heads: stopped by Ctrl-C; ") and "last.ckpt" in err[-1]

    def other_exit(cfg):
        raise SystemExit(3)

    monkeypatch.setattr("audioret.train_heads.run.run", other_exit)
    with pytest.raises(SystemExit):  # not an interrupt: left alone
        cli.main(["--store", str(tmp_path / "s.zarr"), "--out", str(tmp_path / "h")])
