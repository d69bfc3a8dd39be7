"""Data files shipped inside the package (copied from the DCASE 2025 Task 6 baseline)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def resource_path(name: str) -> Path:
    """Path of a shipped resource file, e.g. ``metadata_eval.csv``."""
    path = Path(str(resources.files("audioret") / "resources" / name))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: shipped resource {name!r} is missing; reinstall audioret")
    return path


EXCLUDED_FREESOUND_IDS = "dcase2025_task6_excluded_freesound_ids.csv"
CLOTHO_EVAL_MULTI_MATCH = "metadata_eval.csv"
