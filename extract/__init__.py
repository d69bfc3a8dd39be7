"""audioret.extract: run the frozen encoders once over a corpus into a Zarr feature store.

Public API::

    ExtractConfig                      # extract/config.py (every flag, with help and unit)
    run(config, *, env=None) -> ExtractResult(store, shard, stats: list[TableStats])
    main(argv) -> int                  # `audioret extract ...` / `python -m audioret.extract`
    resolve_shard(num_shards, shard_index, env) -> Shard   # flags > torchrun > SLURM array

Store metadata written: audio_encoder, text_encoder (identities), preprocessing (sample_rate,
window_samples, window_seconds, max_seconds, max_samples, crop, padding, pooling,
text_max_length, text_preprocess, feature_dtype, compute_precision; the audio keys only once an
audio pass ran: a text-only first pass leaves them to it), corpus (name, data_path),
extract_config (resolved ExtractConfig; saved, not compared). Audio tables add the columns
num_samples (16 kHz samples kept) and source_duration (s) beside duration (kept seconds);
plan attrs hold probe_failures (item -> reason).
"""

from __future__ import annotations

from .config import ExtractConfig
from .shard import Shard, parts_of_shard, resolve_shard


def run(config, **kw):  # noqa: ANN001, ANN201 - lazy: importing torch/zarr only when running
    from .pipeline import run as _run

    return _run(config, **kw)


__all__ = ["ExtractConfig", "Shard", "parts_of_shard", "resolve_shard", "run"]
