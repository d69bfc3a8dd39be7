"""mp3 files whose length libsndfile can only guess, and ffmpeg for them.

libsndfile (soundfile's mp3 decoder, and librosa's first choice) takes an mp3's length from its
Xing/Info/VBRI header; without one it estimates it from the first frame's bitrate and **stops
decoding there**. For a constant bitrate that estimate is a little long (reading ends at the end of
the data, fine); for a variable bitrate it can be far off: a 5 s VBR file written without the header
(``ffmpeg -write_xing 0``, streaming encoders) decoded as 1.02 s, silently (measured). ffmpeg (the
seed's mp3 decoder) decodes such files to their end, with the same samples as libsndfile where both
decode (max diff 1.4e-6, same start). So: VBR mp3s without a length header go through ffmpeg; every
other file stays with soundfile.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

_BITRATES = {  # kbit/s by index, Layer III
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),   # MPEG-1
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),       # MPEG-2 and 2.5
}
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
SCAN_FRAMES = 200  # frames whose bitrates are compared to tell VBR


def _skip_id3v2(data: bytes) -> int:
    if len(data) >= 10 and data[:3] == b"ID3":
        size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
        return 10 + size + (10 if data[5] & 0x10 else 0)
    return 0


def _frame(data: bytes, pos: int) -> tuple[int, int, int, bool] | None:
    """(frame bytes, bitrate index, side-info offset, mono) of a Layer III frame header at ``pos``."""
    if pos + 4 > len(data) or data[pos] != 0xFF or (data[pos + 1] & 0xE0) != 0xE0:
        return None
    b1, b2, b3 = data[pos + 1], data[pos + 2], data[pos + 3]
    version, layer, br_idx, sr_idx = (b1 >> 3) & 3, (b1 >> 1) & 3, b2 >> 4, (b2 >> 2) & 3
    if version == 1 or layer != 1 or br_idx in (0, 15) or sr_idx == 3:
        return None
    mpeg1 = version == 3
    bitrate = _BITRATES[1 if mpeg1 else 2][br_idx] * 1000
    rate = _RATES[version][sr_idx]
    size = (144 if mpeg1 else 72) * bitrate // rate + ((b2 >> 1) & 1)
    mono = (b3 >> 6) == 3
    side = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    return size, br_idx, side, mono


def counted_frames(path: str | Path) -> int | None:
    """Samples per channel of an mp3 WITHOUT a Xing/Info/VBRI header, counted from its frame headers
    (what libsndfile and ffmpeg decode from such a file: every frame, no gapless trim); None for a
    file with such a header (libsndfile's count is exact then) or one whose frames cannot be walked
    to the end (junk between frames: the header estimate stays)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
        skip = _skip_id3v2(head)
        fh.seek(skip)
        data = fh.read(1 << 16)
        first = _first_frame(data, 0)
        if first is None or _has_length_header(data, first):
            return None  # the common case: read no further
        fh.seek(skip)
        data = fh.read()
    pos, count, spf = first, 0, 0
    while True:
        fr = _frame(data, pos)
        if fr is None:
            break
        spf = 1152 if (data[pos + 1] >> 3) & 3 == 3 else 576
        count += 1
        pos += fr[0]
    tail = data[pos:]
    if len(tail) > 128 + 32 and not tail.startswith(b"TAG"):  # lost the frame chain: do not guess
        return None
    return count * spf


def _first_frame(data: bytes, pos: int) -> int | None:
    end = min(len(data), pos + (1 << 16))
    while pos < end and _frame(data, pos) is None:
        pos += 1
    return pos if pos < end else None


def _has_length_header(data: bytes, pos: int) -> bool:
    side = _frame(data, pos)[2]  # type: ignore[index]
    return data[pos + 4 + side: pos + 8 + side] in (b"Xing", b"Info") or data[pos + 36: pos + 40] == b"VBRI"


def length_is_guessed(path: str | Path) -> bool:
    """True for a VBR mp3 without a Xing/Info/VBRI header (libsndfile may stop early on it)."""
    with open(path, "rb") as fh:
        head = fh.read(10)
        skip = _skip_id3v2(head)
        fh.seek(skip)
        data = fh.read(1 << 18)  # 200 frames of 320 kbit/s fit
    pos = _first_frame(data, 0)
    if pos is None:
        return False  # not an mp3 stream we can read: leave it to the decoder's own errors
    if _has_length_header(data, pos):
        return False
    rates = set()
    for _ in range(SCAN_FRAMES):
        fr = _frame(data, pos)
        if fr is None:
            break
        rates.add(fr[1])
        pos += fr[0]
    return len(rates) > 1


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None


def ffmpeg_decode(path: str | Path, channels: int, max_frames: int | None = None) -> np.ndarray:
    """All frames (or the first ``max_frames``) at the file's rate: float32 [S, C]. Raises
    ``RuntimeError`` with ffmpeg's message when it fails."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", str(channels),
           "-f", "f32le", "-acodec", "pcm_f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"ffmpeg: {lines[-1] if lines else 'failed'}")
    data = np.frombuffer(proc.stdout, np.float32).copy()  # writable
    data = data[: len(data) - len(data) % channels].reshape(-1, channels)
    return data if max_frames is None else data[:max_frames]
