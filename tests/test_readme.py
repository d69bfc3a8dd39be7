"""Every command the README shows parses: each runs through its stage's real ``main`` with the
stage's ``run`` replaced by a recorder (a dry run), so a renamed or removed flag fails here."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

# stage -> the functions its CLI ends in (patched with a recorder)
RUNNERS = {
    "extract": ["audioret.extract.pipeline.run"],
    "train-heads": ["audioret.train_heads.run.run"],
    "finetune": ["audioret.finetune.run.run"],
    "evaluate": ["audioret.evaluate.cli.run"],
    "predict": ["audioret.evaluate.predict.run"],
    "demo": ["audioret.demo.run"],
    "distill": ["audioret.distill.teachers.run", "audioret.distill.flow.run"],
}


def readme_commands() -> list[list[str]]:
    """argv lists of every `audioret ...` / `-m audioret.<stage> ...` command in bash blocks."""
    text = README.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("#", 1)[0]
            for m in re.finditer(r"(?:^|\s|\")(?:audioret\s+|-m audioret\.)([a-z_-]+)((?:[^\"&|]*))", line):
                stage = m.group(1).replace("_", "-")
                commands.append([stage, *shlex.split(m.group(2).replace("<run>", "RUN"))])
    return commands


COMMANDS = readme_commands()


def test_readme_has_the_workflow_commands():
    stages = {c[0] for c in COMMANDS}
    assert {"extract", "train-heads", "finetune", "evaluate", "predict", "store", "demo", "distill"} <= stages


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, *args, **kwargs):
        self.calls.append(args)
        return SimpleNamespace(exit_code=lambda strict: 0, items=lambda: {}.items())


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(c)[:60] for c in COMMANDS])
def test_readme_command_parses(argv, monkeypatch):
    stage, args = argv[0], argv[1:]
    if stage == "store":  # info / verify read a real store: parse only
        from audioret.store.cli import build_parser

        build_parser().parse_args(args)
        return
    if stage not in RUNNERS:  # newer stages: every flag parses, nothing runs (--print-config exits 0)
        from audioret.cli import main

        with pytest.raises(SystemExit) as done:  # the parser prints the resolved config and exits
            main([stage, *args, "--print-config"])
        assert done.value.code in (0, None)
        return
    recorder = Recorder()
    for target in RUNNERS[stage]:
        module, name = target.rsplit(".", 1)
        monkeypatch.setattr(importlib.import_module(module), name, recorder)
    if stage == "finetune":  # main prints the result dict
        monkeypatch.setattr(importlib.import_module("audioret.finetune.run"), "run", lambda cfg: {"cfg": cfg})
        recorder.calls.append(("finetune",))
    from audioret.cli import main

    code = main([stage, *args])
    assert code == 0
    assert recorder.calls, f"{argv}: the stage's run was never reached"
