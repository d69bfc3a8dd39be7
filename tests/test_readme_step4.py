"""The README's step 4 ("Evaluate and predict") runs verbatim on the demo's own outputs.

The demo runs once at a reduced size; the commands are parsed out of README.md (so README and
test cannot drift) and run through ``audioret``'s real CLI in a folder laid out as the README
assumes: ``runs/heads`` is the demo's heads run, ``runs/ft`` its fine-tune run, ``data`` its corpus
and ``features/clotho.zarr`` the demo's store;
``predict`` writes the ranked list that ``evaluate --predictions`` then scores. Nothing is mocked:
the commands must find the demo corpus's own multi-match annotations by themselves (they used to
exit 2 on the shipped Clotho-eval file).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "### 4. Evaluate and predict"
SMALL = ["--n-dev", "24", "--n-val", "8", "--n-eval", "16", "--head-epochs", "2", "--finetune-epochs", "1",
         "--batch-size", "16", "--num-workers", "0"]
# README path -> the demo artifact it stands for
LAYOUT = {"runs/heads": "heads", "features/clotho.zarr": "features.zarr", "runs/ft": "finetune", "data": "corpus"}


def step4_commands() -> list[list[str]]:
    """argv of every ``audioret ...`` line in the bash block of the README's step 4."""
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n### ", start + len(SECTION))
    block = re.search(r"```bash\n(.*?)```", text[start:end], flags=re.S)
    assert block, f"README.md: no bash block under {SECTION!r}"
    commands = []
    for line in block.group(1).replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("audioret "):
            commands.append(shlex.split(line)[1:])
    return commands


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from audioret.demo import main

    out = tmp_path_factory.mktemp("demo") / "demo"
    assert main(["--out", str(out), *SMALL]) == 0
    return out


def _layout(root: Path, demo: Path) -> None:
    for link, target in LAYOUT.items():
        (root / link).parent.mkdir(parents=True, exist_ok=True)
        (root / link).symlink_to(demo / target)


def _metrics(path: Path) -> dict[str, float]:
    return json.loads(path.read_text())["metrics"]


def test_readme_step4_commands_run_verbatim_on_the_demo(demo, tmp_path, monkeypatch):
    from audioret.cli import main

    commands = step4_commands()
    assert {c[0] for c in commands} >= {"evaluate", "predict"}
    assert any("--predictions" in c for c in commands) and any("--checkpoint" in c for c in commands)
    _layout(tmp_path, demo)
    monkeypatch.chdir(tmp_path)
    for argv in commands:
        assert main(argv) == 0, f"README step 4: `audioret {shlex.join(argv)}` failed"
    demo_metrics = _metrics(demo / "evaluation" / "metrics.json")
    for argv in commands:
        if argv[0] == "evaluate" and "--out" in argv:
            got = _metrics(tmp_path / argv[argv.index("--out") + 1] / "metrics.json")
            assert "mAP@16_multi" in got  # scored against the demo corpus's own annotations
            models = _checkpoints(argv)
            if len(models) == 1:
                assert got == pytest.approx(demo_metrics)
            elif models:  # an ensemble: a row per member (the heads first, as the demo scored them)
                members = json.loads((tmp_path / argv[argv.index("--out") + 1] / "metrics.json").read_text())["members"]
                assert [m["checkpoint"] for m in members] == models
                if models[0] == "runs/heads/heads.pt":
                    assert members[0]["metrics"] == pytest.approx(demo_metrics)


def _checkpoints(argv: list[str]) -> list[str]:
    """The values of --checkpoint in ``argv`` (several for an ensemble)."""
    if "--checkpoint" not in argv:
        return []
    values = argv[argv.index("--checkpoint") + 1:]
    return values[:next((i for i, v in enumerate(values) if v.startswith("--")), len(values))]


def test_the_demo_outputs_score_without_flags(demo, capsys):
    """The issue's commands: `evaluate --checkpoint demo/heads/heads.pt --store demo/features.zarr` and
    `evaluate --predictions demo/predictions/demo_top16.csv` (both exited 2)."""
    from audioret.cli import main

    assert main(["evaluate", "--checkpoint", str(demo / "heads" / "heads.pt"),
                 "--store", str(demo / "features.zarr")]) == 0
    want = {k: v for k, v in _metrics(demo / "evaluation" / "metrics.json").items() if k.endswith("_multi")}
    for name in ("demo_top16.csv", "demo.csv"):
        out = demo.parent / f"scored_{name}"
        assert main(["evaluate", "--predictions", str(demo / "predictions" / name), "--out", str(out)]) == 0
        assert _metrics(out / "metrics.json") == pytest.approx(want)
    assert "mAP@16_multi" in capsys.readouterr().out
