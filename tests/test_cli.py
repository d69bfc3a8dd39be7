from __future__ import annotations

import re
import subprocess
import sys

import pytest

from audioret.cli import STAGES, available_stages, main


def test_help_lists_every_available_stage(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in available_stages():
        assert name in out


def test_unknown_stage_is_an_error(capsys):
    assert main(["no-such-stage"]) == 2


def test_console_script_and_module_entry_points():
    for cmd in (["audioret", "--help"], [sys.executable, "-m", "audioret", "--help"]):
        out = subprocess.run(cmd, capture_output=True, text=True)
        assert out.returncode == 0 and "stages" in out.stdout, out.stderr


def test_every_stage_help_parses():
    for name, (module, _) in available_stages().items():
        mod = __import__(module, fromlist=["main"])
        try:
            code = mod.main(["--help"])
        except SystemExit as e:  # argparse exits 0 after --help
            code = e.code
        assert code in (0, None), name


def test_every_stage_package_runs_with_python_dash_m():
    import importlib.util

    for pkg in ("corpora", "extract", "store", "train_heads", "finetune", "distill", "evaluate"):
        assert importlib.util.find_spec(f"audioret.{pkg}.__main__") is not None, pkg


def test_user_errors_are_one_line_with_exit_2(tmp_path, capsys):
    missing_store, missing_data = tmp_path / "none.zarr", tmp_path / "no_data"
    cases = [["train-heads", "--store", str(missing_store)],
             ["finetune", "--data_path", str(missing_data), "--audio-encoder", "tiny-beats",
              "--text-model", "tiny-roberta", "--no-logging"],
             ["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--store", str(missing_store)],
             ["distill", "run", "--store", str(missing_store), "--out", str(tmp_path / "d")]]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"audioret {' '.join(argv[:2]) if argv[0] == 'distill' else argv[0]}: error:" in err and str(tmp_path) in err and "Traceback" not in err
        assert err.rstrip("\n").splitlines()[-1].startswith("audioret "), err  # the error is one (the last) line


# every stage, and each subcommand of the stages that have them
HELP_ARGVS = [[name] for name in STAGES] + [["corpus", "synth"], ["corpus", "list"], ["store", "info"],
                                             ["store", "verify"], ["distill", "teachers"], ["distill", "run"]]


@pytest.mark.parametrize("argv", HELP_ARGVS, ids=" ".join)
def test_help_has_no_rst_backticks_and_one_default_per_option(argv, capsys):
    if argv[0] not in available_stages():
        pytest.skip(f"stage {argv[0]} not installed")
    assert _exit_code(main, [*argv, "--help"]) in (0, None)
    text = capsys.readouterr().out
    assert "usage" in text.lower()
    assert "``" not in text
    options = re.split(r"\n(?=  -)", text)  # one block per option (argparse indents flags by 2)
    for block in options:
        assert block.count("(default:") <= 1, block


def _exit_code(fn, *args):
    try:
        return fn(*args)
    except SystemExit as e:  # argparse exits 0 after --help
        return e.code
