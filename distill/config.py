"""Configs of ``audioret distill teachers`` and ``audioret distill run`` (one flag per field)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audioret.config import option


@dataclass
class TeachersConfig:
    """Run each teacher (train-heads or finetune checkpoint) once over a training split; keep the embeddings."""

    STAGE = "distill teachers"  # recorded in saved configs (audioret.config.to_dict); not a field

    checkpoints: list[Path] = option(default_factory=list, help="teacher checkpoints (several = ensemble): "
                                     "train-heads heads.pt/.ckpt or finetune .ckpt")
    out: Path = option(Path("runs/teachers"), "output artifact folder")
    split: str = option("dev", "training split the teachers embed (stage 2 must train on it)")
    store: Path | None = option(None, "feature store for heads teachers (default: the store recorded in "
                                      "the checkpoint)")
    data_path: Path | None = option(None, "corpus root for finetune teachers (as finetune --data_path)")
    corpus: str = option("clotho", "corpus name for finetune teachers")
    audio_store: Path | None = option(None, "finetune teachers: stored BEATs window means instead of decoding "
                                            "(default: the teacher's own --audio-store, if any)")
    device: str = option("cpu", "torch device (cpu, cuda, cuda:1)")
    batch_size: int = option(256, "items per forward pass (finetune teachers: clips)", unit="items")
    overwrite: bool = option(False, "replace an existing artifact")


@dataclass
class DistillRunConfig:
    """Stage 1 (N head models, different seeds) -> ensemble teacher -> stage 2 (each stage-1 model
    distilled) -> stage 1 vs stage 2 table. Every other flag is a train-heads flag (architecture, lr, ...)."""

    STAGE = "distill run"  # recorded in saved configs (audioret.config.to_dict); not a field

    store: Path | None = option(None, "feature store written by `audioret extract` (required)")
    train: str = option("dev", "training split (the teachers are computed on it)")
    val: str | None = option("val", "validation split (checkpoint selection); none to skip")
    test: str | None = option("eval", "test split of the stage 1 vs stage 2 table")
    out: Path = option(Path("runs/distill"), "output folder: stage1/, teachers/, stage2/, compare.csv/json")
    teachers: int = option(3, "stage-1 models trained (seeds seed, seed+1, ...), all in the ensemble teacher")
    seed: int = option(1, "first seed")
    stage2_epochs: int | None = option(None, "stage-2 epochs (default: the stage-1 --max-epochs)", unit="epochs")
    stage2_lr: float | None = option(None, "stage-2 peak learning rate (default: the stage-1 --max-lr)")
    loss_weight: float = option(0.0, "stage 2: weight of the contrastive loss (paper: 0)")
    distill_weight: float = option(1.0, "stage 2: weight of the distillation loss (paper: 1)")
    control: bool = option(True, "also train each stage-1 model on with the contrastive loss only for the "
                                 "stage-2 epochs (separates distillation from extra training)")
    multi_match: Path | None = option(None, "multi-match annotations CSV of the test split (query, "
                                            "audio_filenames) for mAP@16 multi-match")
