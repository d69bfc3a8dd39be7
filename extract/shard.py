"""Which shard this process is, and which store parts it owns (pure functions).

Scale-out rides on existing launchers only: explicit flags, else ``torchrun`` (``RANK`` /
``WORLD_SIZE``), else a SLURM job array (``SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN`` of
``SLURM_ARRAY_TASK_COUNT``), else one shard. Parts go round-robin: part p belongs to shard
p mod N, so every shard gets a spread of the corpus and no two shards touch the same part.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    index: int
    count: int
    source: str  # "flags" | "torchrun" | "slurm-array" | "single"


def resolve_shard(num_shards: int | None, shard_index: int | None, env: Mapping[str, str]) -> Shard:
    """The shard of this process; explicit flags win over launcher variables."""
    if num_shards is not None or shard_index is not None:
        shard = Shard(int(shard_index or 0), int(num_shards or 1), "flags")
    elif "WORLD_SIZE" in env and "RANK" in env:
        shard = Shard(int(env["RANK"]), int(env["WORLD_SIZE"]), "torchrun")
    elif "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        low = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        shard = Shard(int(env["SLURM_ARRAY_TASK_ID"]) - low, int(env["SLURM_ARRAY_TASK_COUNT"]), "slurm-array")
    else:
        shard = Shard(0, 1, "single")
    if shard.count < 1 or not 0 <= shard.index < shard.count:
        raise ValueError(f"shard index {shard.index} is not in [0, {shard.count}) (from {shard.source}); "
                         "pass --shard-index in [0, --num-shards), or fix the launcher variables "
                         "(a SLURM array must be contiguous, e.g. --array=0-7)")
    return shard


def parts_of_shard(num_parts: int, shard: Shard) -> list[int]:
    """Store parts owned by ``shard``: round-robin (part p -> shard p mod N)."""
    return list(range(shard.index, num_parts, shard.count))


def local_device_index(env: Mapping[str, str]) -> int:
    """GPU index for this process: ``LOCAL_RANK`` under torchrun, else 0."""
    return int(env.get("LOCAL_RANK", "0"))
