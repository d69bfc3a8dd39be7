"""audioret.encoders: BEATs and PaSST (official checkpoints, own implementations) and HF text encoders.

Build encoders only through ``audioret.encoders.registry`` (``build_audio_encoder``,
``build_text_encoder``); ``load_beats`` / ``load_passt`` are exported for users who know those APIs.
"""

from .beats import BEATs, BEATsConfig, CheckpointError, load_beats, save_beats_checkpoint
from .passt import PaSST, PaSSTConfig, load_passt
from .registry import (AUDIO_ENCODERS, AudioEncoder, build_audio_encoder, build_text_encoder,
                       cache_dir)
from .text import TextEncoder, TextModelNotFound, baseline_preprocess

__all__ = ["AUDIO_ENCODERS", "AudioEncoder", "BEATs", "BEATsConfig", "CheckpointError",
           "TextEncoder", "TextModelNotFound", "baseline_preprocess", "build_audio_encoder",
           "build_text_encoder", "cache_dir", "load_beats", "save_beats_checkpoint", "PaSST", "PaSSTConfig",
           "load_passt"]
