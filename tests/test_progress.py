"""Progress and log output: a rich bar on a terminal, plain lines otherwise (trainers per epoch, extract
per share of a table), each log line once, no advertising tips, readable tables."""

from __future__ import annotations

import io
import logging
import sys

import pytest
from rich.console import Console

from audioret.logs import format_duration, setup_logging


@pytest.fixture
def clean_logging():
    """setup_logging changes the root logger and Lightning's loggers: restore them after the test."""
    root = logging.getLogger()
    names = ("lightning", "lightning.pytorch", "lightning.fabric")
    saved = (list(root.handlers), root.level, {n: (list(logging.getLogger(n).handlers),
                                                   logging.getLogger(n).propagate) for n in names})
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for n, (handlers, propagate) in saved[2].items():
        logging.getLogger(n).handlers[:] = handlers
        logging.getLogger(n).propagate = propagate


def test_a_lightning_line_is_printed_once_and_tips_not_at_all(capsys, clean_logging):
    import lightning  # noqa: F401  (its import hangs its own console handler on the "lightning" logger)
    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    # what `import lightning` does, bound to this test's stderr so that a second copy would show
    logging.getLogger("lightning").addHandler(logging.StreamHandler(sys.stderr))
    setup_logging()
    rank_zero_info("GPU available: False, used: False")
    rank_zero_info("💡 Tip: For seamless cloud logging and experiment tracking, try installing litlogger")
    rank_zero_info("TPU available: False, using: 0 TPU cores")
    err = capsys.readouterr().err
    assert err.count("GPU available: False") == 1, err
    assert "Tip" not in err and "litlogger" not in err and "TPU" not in err
    setup_logging()  # a second call (demo -> stage) does not add a second handler
    logging.getLogger("audioret.x").info("hello")
    assert capsys.readouterr().err.count("hello") == 1


def test_trainers_pick_the_rich_bar_on_a_terminal_and_epoch_lines_otherwise():
    from audioret.models.progress import EpochLines, RichBar, progress_callbacks

    show, [bar] = progress_callbacks(True, terminal=True)
    assert show and isinstance(bar, RichBar)
    show, [lines] = progress_callbacks(True, terminal=False)
    assert show and isinstance(lines, EpochLines)
    assert progress_callbacks(False) == (False, [])  # --no-progress: nothing


def _stats(done: int):
    from audioret.extract.report import TableStats

    return TableStats(split="dev", kind="audio", items=100, processed=done, audio_seconds=10.0 * done)


def test_extract_logs_a_plain_line_per_quarter_off_a_terminal(caplog):
    from audioret.extract.report import ExtractProgress

    progress = ExtractProgress(True, Console(file=io.StringIO(), force_terminal=False), every_seconds=1e9)
    with caplog.at_level(logging.INFO, logger="audioret.extract.report"), progress:
        task = progress.task("dev audio", 100)
        for done in range(0, 101, 5):
            progress.update(task, _stats(done), started=0.0)
    lines = [r.getMessage() for r in caplog.records if r.name == "audioret.extract.report"]
    assert [line.split(",")[0] for line in lines] == [f"dev audio: {n}/100 items ({n}%)" for n in (25, 50, 75, 100)]
    assert all("items/s" in line and "ETA" in line for line in lines)


def test_extract_uses_the_rich_bar_on_a_terminal(caplog):
    from audioret.extract.report import ExtractProgress

    out = io.StringIO()
    progress = ExtractProgress(True, Console(file=out, force_terminal=True))
    with caplog.at_level(logging.INFO, logger="audioret.extract.report"), progress:
        task = progress.task("dev audio", 100)
        progress.update(task, _stats(100), started=0.0)
    assert not [r for r in caplog.records if r.name == "audioret.extract.report"]
    assert "dev audio" in out.getvalue() and "100/100" in out.getvalue()


def test_durations_read_at_a_glance():
    assert [format_duration(s) for s in (4.23, 102, 7380)] == ["4.2s", "1m 42s", "2h 03m"]


def test_train_heads_table_shows_percent_and_wall_time(tmp_path, capsys):
    from audioret.train_heads.run import RunResult, write_table

    write_table([RunResult("heads", {}, {"val/mAP@10": 0.123456, "test/mAP@10": 0.5}, None, 701.8)], tmp_path)
    out = capsys.readouterr().out
    assert "12.35" in out and "50.00" in out and "11m 41s" in out
    assert "0.1235" not in out and "701.8000" not in out
    row = (tmp_path / "sweep.csv").read_text().splitlines()[1]
    assert "0.123456" in row and "701.8" in row  # the file keeps fractions and seconds
