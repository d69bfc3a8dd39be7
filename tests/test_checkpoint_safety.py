"""No code from checkpoint files: every command that opens a heads or finetune checkpoint refuses a
file whose pickle would call a function, with one line and exit 2, before anything runs.

Each malicious file, when unpickled without weights_only, creates a marker file; the marker must
never appear. The files are otherwise well-formed (the right top-level keys), so only the
weights_only allow-list stands between them and execution.
"""

from __future__ import annotations

import pathlib

import pytest
import torch

from audioret.cli import main as audioret_main
from audioret.models.checkpoint import (FORMAT, FORMAT_VERSION, LIGHTNING_KEY, UnsafeCheckpointError, load_checked,
                                        safe_torch_load)


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: a stand-in for any code an attacker would run."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _heads_file(path: pathlib.Path, marker: pathlib.Path) -> pathlib.Path:
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "head_config": {}, "state_dict": {},
                "store": {}, "metrics": {"x": _Payload(marker)}, "train_config": {}}, path)
    return path


def _lightning_heads_file(path: pathlib.Path, marker: pathlib.Path) -> pathlib.Path:
    torch.save({"state_dict": {}, LIGHTNING_KEY: {"format": FORMAT, "trap": _Payload(marker)},
                "epoch": 0, "global_step": 1}, path)
    return path


def _finetune_file(path: pathlib.Path, marker: pathlib.Path) -> pathlib.Path:
    torch.save({"state_dict": {"model.w": torch.zeros(1)}, "epoch": 0, "global_step": 1,
                "hyper_parameters": {"audio_encoder": "tiny-beats", "text_model": _Payload(marker)}}, path)
    return path


MAKERS = {"heads": _heads_file, "lightning-heads": _lightning_heads_file, "finetune": _finetune_file}


@pytest.fixture
def marker(tmp_path):
    m = tmp_path / "PWNED"
    yield m
    assert not m.exists(), "a checkpoint ran code while loading"


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_loader_refuses_pickled_code(kind, tmp_path, marker):
    path = MAKERS[kind](tmp_path / f"{kind}.ckpt", marker)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checked(path, "a checkpoint")
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "refused" in msg
    assert "GLOBAL" in msg and "open" in msg  # names what the file wanted to call


def test_plain_types_and_paths_still_load(tmp_path):
    path = tmp_path / "ok.pt"
    torch.save({"w": torch.ones(2), "cfg": {"lr": 1e-3, "out": pathlib.Path("runs/x"), "tags": ["a", 1]}}, path)
    got = safe_torch_load(path)
    assert got["cfg"]["out"] == pathlib.Path("runs/x") and torch.equal(got["w"], torch.ones(2))


@pytest.fixture(scope="module")
def store(synth_corpus, tmp_path_factory):
    from audioret.extract import ExtractConfig, run as extract_run

    path = tmp_path_factory.mktemp("safety") / "store.zarr"
    extract_run(ExtractConfig(corpus="clotho", data_path=synth_corpus, store=path, splits=("eval",),
                              audio_encoder="tiny-beats", text_model="tiny-roberta", num_workers=0, progress=False))
    return path


def _commands(ckpt: pathlib.Path, tmp: pathlib.Path, data: pathlib.Path, store: pathlib.Path) -> dict[str, list[str]]:
    """Every CLI that opens a user's heads/finetune checkpoint, with just enough flags to reach the load."""
    return {
        "evaluate": ["evaluate", "--checkpoint", str(ckpt), "--store", str(store), "--out", str(tmp / "e")],
        "predict-store": ["predict", "--checkpoint", str(ckpt), "--store", str(store), "--out", str(tmp / "p")],
        "predict-audio": ["predict", "--checkpoint", str(ckpt), "--audio-dir", str(tmp),
                          "--captions", str(tmp / "c.csv"), "--out", str(tmp / "p")],
        "distill-teachers": ["distill", "teachers", "--checkpoints", str(ckpt), "--out", str(tmp / "t")],
        "finetune-load": ["finetune", "--data_path", str(data), "--audio-encoder", "tiny-beats",
                          "--text-model", "tiny-roberta", "--load_ckpt_path", str(ckpt), "--out", str(tmp / "f")],
        "finetune-resume": ["finetune", "--data_path", str(data), "--audio-encoder", "tiny-beats",
                            "--text-model", "tiny-roberta", "--resume_ckpt_path", str(ckpt), "--out", str(tmp / "f")],
        "finetune-init-heads": ["finetune", "--data_path", str(data), "--audio-encoder", "tiny-beats",
                                "--text-model", "tiny-roberta", "--init-heads", str(ckpt), "--out", str(tmp / "f")],
        "train-heads-init": ["train-heads", "--store", str(store), "--train", "eval", "--val", "eval",
                             "--test", "eval", "--init-from", str(ckpt), "--out", str(tmp / "h")],
    }


@pytest.mark.parametrize("command", ["evaluate", "predict-store", "predict-audio", "distill-teachers",
                                     "finetune-load", "finetune-resume", "finetune-init-heads",
                                     "train-heads-init"])
@pytest.mark.parametrize("kind", ["heads", "finetune"])
def test_every_loading_command_refuses_pickled_code(command, kind, tmp_path, marker, capsys, synth_corpus,
                                                    store):
    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "a.wav", np.zeros(16000, dtype=np.float32), 16000)
    (tmp_path / "c.csv").write_text("caption\na quiet room\n")
    ckpt = MAKERS[kind](tmp_path / f"{kind}.ckpt", marker)
    argv = _commands(ckpt, tmp_path, synth_corpus, store)[command]
    try:
        code = audioret_main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if "error" in line]
    assert any("refused to load" in line and str(ckpt) in line for line in lines), err


@pytest.mark.parametrize("content", ["heads", "random", "weights-only"])
def test_resume_refuses_what_it_cannot_resume_in_one_line(content, tmp_path, synth_corpus, capsys):
    """--resume_ckpt_path given a train-heads file, random bytes or a weights-only dict: one line, exit 2,
    and no run folder (Lightning would fail inside fit with a traceback)."""
    path = tmp_path / "x.ckpt"
    if content == "heads":
        torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "state_dict": {}}, path)
    elif content == "random":
        path.write_bytes(bytes(range(256)) * 64)
    else:
        torch.save({"state_dict": {"model.w": torch.zeros(1)}, "hyper_parameters": {}}, path)
    out = tmp_path / "run"
    code = audioret_main(["finetune", "--data_path", str(synth_corpus), "--audio-encoder", "tiny-beats",
                          "--text-model", "tiny-roberta", "--resume_ckpt_path", str(path), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--resume_ckpt_path" in err[0] and str(path) in err[0], err
    assert not out.exists()
    if content == "heads":
        assert "--init-heads" in err[0]
