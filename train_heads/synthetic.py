"""Learnable synthetic features (no encoders, no audio): for tests, benchmarks and smoke runs.

Each clip has a latent z [k]; its frames are a fixed random non-linear map of z plus per-frame
noise, and each of its captions' tokens are another fixed map of a noisy copy of z. The first
token is mostly noise (as a frozen encoder's <s> token is), so the pooling choices matter.
Chance mAP@10 for N clips with one relevant audio is about H_10/N (``chance_map_at_10``).
"""

from __future__ import annotations

import torch

from .data import FeatureSplit, Ragged


def chance_map_at_10(num_clips: int) -> float:
    """Expected single-match mAP@10 of a random ranking (see ``evaluate.metrics.chance_metrics``)."""
    from audioret.evaluate.metrics import chance_metrics

    return chance_metrics(num_clips, [])["mAP@10"]


def _maps(audio_dim: int, text_dim: int, latent: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(10_000 + seed)
    return (torch.randn(latent, audio_dim, generator=g) / latent ** 0.5,
            torch.randn(latent, text_dim, generator=g) / latent ** 0.5)


def synthetic_split(name: str, num_clips: int, *, captions_per_clip: int = 5, audio_dim: int = 32,
                    text_dim: int = 48, latent: int = 16, frames: tuple[int, int] = (20, 60),
                    tokens: tuple[int, int] = (6, 14), noise: float = 0.8, seed: int = 0,
                    world_seed: int = 0, dtype: torch.dtype = torch.float16) -> FeatureSplit:
    """A split of ``num_clips`` clips; splits sharing ``world_seed`` share the feature maps."""
    wa, wt = _maps(audio_dim, text_dim, latent, world_seed)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(num_clips, latent, generator=g)
    frame_list, window_list, token_list, first_rows, cap_clip, captions = [], [], [], [], [], []
    for c in range(num_clips):
        t = int(torch.randint(frames[0], frames[1] + 1, (1,), generator=g))
        f = torch.tanh((z[c] + noise * torch.randn(t, latent, generator=g)) @ wa)  # [T, Da]
        frame_list.append(f.to(dtype))
        window_list.append(torch.stack([w.mean(0) for w in f.split(62)]).to(dtype))  # 62 frames per window
        for j in range(captions_per_clip):
            length = int(torch.randint(tokens[0], tokens[1] + 1, (1,), generator=g))
            zc = z[c] + noise * torch.randn(latent, generator=g)
            tok = torch.tanh((zc + noise * torch.randn(length, latent, generator=g)) @ wt)  # [L, Dt]
            tok[0] = torch.randn(text_dim, generator=g) * 0.5 + 0.05 * tok[0]  # <s>: mostly noise
            token_list.append(tok.to(dtype))
            first_rows.append(tok[0].to(dtype))
            cap_clip.append(c)
            captions.append(f"clip {c} caption {j}")
    return FeatureSplit(name=name, clip_ids=[f"{name}_{c:05d}.wav" for c in range(num_clips)],
                        captions=captions, caption_clip=torch.tensor(cap_clip, dtype=torch.long),
                        frames=Ragged.from_list(frame_list), windows=Ragged.from_list(window_list),
                        tokens=Ragged.from_list(token_list), first=torch.stack(first_rows),
                        metadata={"audio_encoder": {"name": "synthetic", "seed": world_seed},
                                  "text_encoder": {"name": "synthetic", "seed": world_seed}})
