"""audioret.encoders: BEATs (official checkpoints, own implementation) and HF text encoders.

Build encoders only through ``audioret.encoders.registry`` (``build_audio_encoder``,
``build_text_encoder``); ``load_beats`` is exported for users who know the BEATs API.
"""

from .beats import BEATs, BEATsConfig, CheckpointError, load_beats, save_beats_checkpoint
from .registry import (AUDIO_ENCODERS, AudioEncoder, build_audio_encoder, build_text_encoder,
                       cache_dir)
from .text import TextEncoder, TextModelNotFound, baseline_preprocess

__all__ = ["AUDIO_ENCODERS", "AudioEncoder", "BEATs", "BEATsConfig", "CheckpointError",
           "TextEncoder", "TextModelNotFound", "baseline_preprocess", "build_audio_encoder",
           "build_text_encoder", "cache_dir", "load_beats", "save_beats_checkpoint"]
