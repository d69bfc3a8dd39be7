"""Config of ``audioret train-heads`` (one flag per field; ``--help`` shows defaults and units).

Defaults are chosen by measurement on frozen features, NOT copied from the fine-tuned baseline
recipe (see the README section printed by --help): masked-mean text pooling (the frozen <s>
token carries almost nothing), mean+std audio pooling, an MLP projection, and a larger learning
rate than the baseline's 2e-5 (which is tuned for fine-tuning RoBERTa). The exact baseline head
is ``--audio-pooling segment-mean --text-pooling first --projection linear``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from audioret.config import option


@dataclass
class TrainHeadsConfig:
    """Train projection heads on cached store features (no audio decoding, no encoder runs)."""

    STAGE = "train-heads"  # recorded in saved configs (audioret.config.to_dict); not a field

    store: Path | None = option(None, "feature store written by `audioret extract` (a .zarr folder)")
    train: str = option("dev", "training split in the store")
    val: str | None = option("val", "validation split (selects the checkpoint by val/mAP@10); none to skip")
    test: str | None = option("eval", "test split scored after training with the best checkpoint; none to skip")
    out: Path = option(Path("runs/heads"), "output folder (checkpoints, metrics, logs, sweep table)")
    # heads
    audio_pooling: Literal["segment-mean", "mean", "mean-std", "attention"] = option(
        "mean-std", "audio pooling over stored frames; segment-mean = the seed's exact recipe")
    text_pooling: Literal["first", "mean", "mean-std", "attention"] = option(
        "mean", "text pooling over stored tokens; first = the seed's <s> token (only good when fine-tuning)")
    projection: Literal["linear", "mlp"] = option("mlp", "projection to the shared space; linear = the baseline")
    embed_dim: int = option(1024, "shared embedding width", unit="dims")
    hidden_dim: int = option(1024, "MLP hidden width", unit="dims")
    dropout: float = option(0.1, "dropout in the MLP and sequence layers")
    seq_layers: int = option(0, "trainable transformer layers over cached frames/tokens before pooling "
                                "(1-2 win back part of what fine-tuning the text encoder buys; 0 = off)")
    seq_dim: int = option(256, "width of those layers", unit="dims")
    seq_heads: int = option(4, "attention heads of those layers")
    # loss and optimisation (baseline section 5/6 shape; numbers re-tuned for frozen features)
    initial_tau: float = option(0.05, "contrastive temperature (|tau| is used)")
    tau_trainable: bool = option(False, "learn the temperature")
    max_lr: float = option(1e-3, "peak learning rate (baseline fine-tuning: 2e-5)")
    min_lr: float = option(1e-6, "learning rate at start of warmup and after the cosine")
    warmup_epochs: float = option(1.0, "linear warmup from min_lr", unit="epochs")
    rampdown_epochs: float = option(15.0, "cosine decay to min_lr", unit="epochs")
    max_epochs: int = option(20, "training epochs", unit="epochs")
    weight_decay: float = option(0.0, "AdamW weight decay (baseline: 0)")
    batch_size: int = option(64, "captions per batch per device (each with its clip)", unit="captions")
    eval_batch_size: int = option(256, "clips/captions per evaluation chunk", unit="items")
    seed: int = option(21208, "random seed (Lightning seed_everything, workers included)")
    # stage 2 of `audioret distill` (estimated correspondences, baseline.md section 12)
    distill_from: Path | None = option(None, "stage 2: teachers artifact written by `audioret distill teachers` "
                                             "on the --train split (adds the distillation loss)")
    init_from: Path | None = option(None, "initialise the heads (architecture and weights) from this "
                                          "train-heads checkpoint (stage 2: the stage-1 model)")
    loss_weight: float | None = option(None, "weight of the contrastive loss (default 1; 0 with --distill-from)")
    distill_weight: float | None = option(None, "weight of the distillation loss (default 0; 1 with "
                                                "--distill-from, as the paper)")
    # data
    data: Literal["auto", "memory", "stream"] = option(
        "auto", "hold the split in RAM/GPU (memory), read batches from the store (stream), or choose by size")
    memory_limit_gb: float = option(8.0, "auto: splits above this stream from the store; streaming holds at most "
                                         "this much of it in RAM", unit="GB", flags=("--max-memory-gb",))
    data_device: Literal["auto", "cpu", "accelerator"] = option(
        "auto", "where an in-memory split lives (auto: the accelerator when it fits)")
    num_workers: int = option(2, "streaming: threads reading the store ahead of training")
    shuffle_window: int = option(8, "streaming: blocks of consecutive captions mixed together by the shuffle",
                                 unit="blocks")
    # hardware
    accelerator: str = option("auto", "Lightning accelerator: auto, cpu, gpu")
    devices: str = option("auto", "Lightning devices: auto, a count, or a list like 0,1")
    strategy: str = option("auto", "Lightning strategy (ddp for several GPUs)")
    precision: str = option("auto", "auto (bf16-mixed where supported, 16-mixed on Turing, 32-true on CPU) "
                                    "or any Lightning precision")
    logger: Literal["csv", "tensorboard", "wandb", "none"] = option(
        "csv", "per-step loss/lr/temperature and per-epoch validation log in <out>/logs/ (csv: what "
               "`audioret report` draws; tensorboard/wandb need pip install 'audioret[tensorboard]' or "
               "'audioret[wandb]')")
    floor: Literal["ridge", "pls", "none"] = option(
        "ridge", "closed-form CPU floor (scikit-learn on pooled features) printed next to the heads")
    # sweeps: any list given runs every combination back to back, one table at the end
    seeds: list[int] = option(default_factory=list, help="sweep: seeds (default: --seed only)")
    lrs: list[float] = option(default_factory=list, help="sweep: max learning rates")
    taus: list[float] = option(default_factory=list, help="sweep: temperatures")
    audio_poolings: list[str] = option(default_factory=list, help="sweep: audio poolings")
    text_poolings: list[str] = option(default_factory=list, help="sweep: text poolings")
    projections: list[str] = option(default_factory=list, help="sweep: projections")
    progress: bool = option(True, "show progress bars")
