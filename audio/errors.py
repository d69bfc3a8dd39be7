"""The one exception every audio read raises."""

from __future__ import annotations

from pathlib import Path


class AudioDecodeError(RuntimeError):
    """A file could not be read as audio (corrupt, truncated, empty, unsupported or unreadable).

    ``path`` is the file, ``reason`` says what went wrong; the message names both.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: cannot decode audio: {reason}")
