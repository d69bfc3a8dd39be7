"""The README's set-up: CI runs its test command verbatim, and the CPU-only install pins the same
torch/torchaudio versions as the two commands (so a laptop user gets the tested versions)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _two_commands() -> list[str]:
    block = README.split("## Two commands", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.startswith("pip install")]


def _pins(line: str) -> dict[str, str]:
    return dict(re.findall(r"\b(torch|torchaudio)==([\w.+]+)", line))


def test_ci_runs_the_readme_test_command_verbatim():
    setup, test = _two_commands()
    assert "audioret demo" in setup and "pytest" in test
    assert test in (ROOT / ".ci" / "run").read_text().splitlines()


def test_cpu_only_install_pins_the_same_versions_from_the_cpu_index():
    setup, test = _two_commands()
    cpu = [line for line in README.splitlines() if "--index-url" in line and line.startswith("pip install")]
    assert len(cpu) == 1, cpu
    assert cpu[0].endswith("--index-url https://download.pytorch.org/whl/cpu")
    assert _pins(cpu[0]) == _pins(setup) == _pins(test) and set(_pins(setup)) == {"torch", "torchaudio"}
    after = README.split(cpu[0], 1)[1].split("```", 1)[0]
    assert re.search(r"pip install -e '?\.(\[[a-z,]+\])?'?(\s|$)", after)  # then the project, which keeps that torch
