"""Feature batches the heads consume: padded stored features plus masks (no raw audio, no tokens ids).

These are the in-memory form of what the store keeps per item (see store/FORMAT.md): audio
frames ``[T_i, D_a]`` and per-window token means ``[W_i, D_a]``; text token features ``[L_j, D_t]``
and the first-token vector ``[D_t]``. A batch pads each ragged field to the batch maximum.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor


@dataclass
class AudioFeatures:
    """A batch of clips. Masks are bool, True = valid position."""

    frames: Tensor  # [B, T, D_a] float (fp16 in the store; the heads cast)
    frame_mask: Tensor  # [B, T] bool
    window_means: Tensor  # [B, W, D_a] mean of all tokens of each 10 s window (seed pooling)
    window_mask: Tensor  # [B, W] bool

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "AudioFeatures":
        return _to(self, device, dtype)

    def __len__(self) -> int:
        return int(self.frames.shape[0])


@dataclass
class TextFeatures:
    """A batch of captions. ``token_mask`` is bool, True = valid token (specials included)."""

    tokens: Tensor  # [B, L, D_t]
    token_mask: Tensor  # [B, L] bool
    first: Tensor  # [B, D_t] first-token (<s>) feature

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "TextFeatures":
        return _to(self, device, dtype)

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def _to(batch, device, dtype):
    out = {}
    for f in fields(batch):
        t = getattr(batch, f.name)
        if dtype is not None and t.is_floating_point():
            t = t.to(device=device, dtype=dtype, non_blocking=True)
        else:
            t = t.to(device=device, non_blocking=True)
        out[f.name] = t
    return replace(batch, **out)


def pad_ragged(flat: Tensor, starts: Tensor, lengths: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    """Gather items ``index`` of a ragged array into a padded batch.

    flat [R, D]; item i is ``flat[starts[i] : starts[i] + lengths[i]]`` (the store's offsets/lengths);
    index [B] -> (padded [B, T_max, D] zero-filled, mask [B, T_max] bool). One vectorised gather.
    """
    index = index.to(flat.device)
    start = starts.to(flat.device)[index]  # [B]
    length = lengths.to(flat.device)[index]  # [B]
    t_max = max(int(length.max()) if len(index) else 0, 1)
    pos = torch.arange(t_max, device=flat.device)  # [T]
    mask = pos[None, :] < length[:, None]  # [B, T]
    rows = (start[:, None] + pos[None, :]).clamp_max(max(flat.shape[0] - 1, 0))  # [B, T]
    out = flat[rows] * mask[..., None].to(flat.dtype)  # [B, T, D]
    return out, mask
