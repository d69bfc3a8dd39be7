"""Clip durations from file headers (no decoding)."""

from __future__ import annotations

from pathlib import Path

from audioret.audio import AudioDecodeError, probe


def probe_durations(paths: list[Path]) -> list[float | None]:
    """Seconds per file from its header; None where the header cannot be read (the decode
    step reports such files properly, with their reason)."""
    out: list[float | None] = []
    for p in paths:
        try:
            out.append(probe(p).duration)
        except AudioDecodeError:
            out.append(None)
    return out
