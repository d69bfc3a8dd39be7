"""The ONE place that imports aac-datasets.

Why a shim: aac-datasets 0.7.0 imports ``AudioMetaData`` from ``torchaudio`` or, failing that,
from ``torchaudio.backend.common``. torchaudio >= 2.9 removed both (and ``torchaudio.load`` /
``torchaudio.info``), so ``import aac_datasets`` fails with ``ModuleNotFoundError``. We only use
aac-datasets for its metadata readers and path layout (never its audio loader, which calls the
removed ``torchaudio.load``), so a minimal stand-in type is enough to make the import succeed.
The stand-in is registered only when torchaudio lacks the real one.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import types
from functools import lru_cache
from typing import Any


@dataclasses.dataclass
class AudioMetaData:
    """Stand-in for torchaudio's removed ``AudioMetaData`` (only its name is needed at import)."""

    sample_rate: int = -1
    num_frames: int = -1
    num_channels: int = -1
    bits_per_sample: int = -1
    encoding: str = "UNKNOWN"


def _install_torchaudio_backend_shim() -> None:
    import torchaudio

    if hasattr(torchaudio, "AudioMetaData"):
        return
    try:
        importlib.import_module("torchaudio.backend.common")
        return
    except ImportError:
        pass
    backend = sys.modules.get("torchaudio.backend") or types.ModuleType("torchaudio.backend")
    common = types.ModuleType("torchaudio.backend.common")
    common.AudioMetaData = AudioMetaData  # type: ignore[attr-defined]
    backend.common = common  # type: ignore[attr-defined]
    sys.modules["torchaudio.backend"] = backend
    sys.modules["torchaudio.backend.common"] = common


@lru_cache(maxsize=1)
def import_aac_datasets() -> Any:
    """Import and return the ``aac_datasets`` package (installing the torchaudio shim first)."""
    _install_torchaudio_backend_shim()
    import aac_datasets

    return aac_datasets
