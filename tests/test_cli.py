from __future__ import annotations

import subprocess
import sys

from audioret.cli import available_stages, main


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
