"""Config of ``audioret finetune``: the baseline's ``d25_t6.train`` options, same names and defaults
(baseline.md 10.1, BEATs copy), plus audioret's own. Both ``--batch_size`` and ``--batch-size``
spellings work; booleans take ``--x`` / ``--no-x``. The resolved config is the checkpoint's
``hyper_parameters`` (as the baseline stores ``vars(args)``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from audioret.config import option

SEED_WORKERS = 16  # the baseline's --n_workers default


def default_workers() -> int:
    """The seed's 16 DataLoader workers, capped at the CPU cores this process may use (a 2-core
    machine gets 2, not 16 processes fighting over two cores)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(SEED_WORKERS, cores))


@dataclass
class FinetuneConfig:
    """End-to-end baseline training (BEATs + RoBERTa-large, contrastive) on raw audio or cached
    BEATs window means (--audio-store), with the baseline's recipe and command line."""

    STAGE = "finetune"  # recorded in saved configs (audioret.config.to_dict); not a field

    # ---- the baseline's options (d25_t6.train, BEATs copy) ------------------------------------
    data_path: Path = option(Path("data"), "dataset root holding CLOTHO_v2.1/ (and AUDIOCAPS/, WavCaps/)")
    checkpoints_path: Path = option(Path("checkpoints"), "folder for run folders (<checkpoints_path>/<run>)")
    seed: int = option(21208, "random seed; <= 0 means no seeding")
    batch_size: int = option(64, "training batch size per device", unit="captions")
    batch_size_eval: int = option(64, "validation/test batch size", unit="clips")
    max_epochs: int = option(20, "training epochs", unit="epochs")
    warmup_epochs: float = option(1.0, "linear warmup from min_lr to max_lr", unit="epochs")
    rampdown_epochs: float = option(15.0, "cosine from max_lr to min_lr after warmup", unit="epochs")
    max_lr: float = option(2e-5, "peak learning rate")
    min_lr: float = option(1e-7, "learning rate at the start of warmup and after the cosine")
    initial_tau: float = option(0.05, "contrastive temperature (|tau| is used)")
    tau_trainable: bool = option(False, "learn the temperature")
    compile: bool = option(False, "torch.compile the encoders (CUDA capability >= 7 only)")
    audiocaps: bool = option(False, "add AudioCaps train to the training data")
    wavcaps: bool = option(False, "add WavCaps (FreeSound with DCASE exclusions, BBC, SoundBible, AudioSet)")
    ablate_clean_setup: bool = option(True, "WavCaps AudioSet subset: True = 'audioset' (as the baseline's "
                                            "default), False = without AudioCaps clips")
    roberta_base: bool = option(False, "use roberta-base instead of roberta-large")
    devices: str = option("auto", "Lightning devices (auto, a count like 4, or a list like 0,1)")
    n_workers: int = option(default_factory=default_workers, flags=("--num-workers", "--num_workers"),
                            help="DataLoader workers (0 = load in the main process); the seed's 16, capped at "
                                 "the CPU cores available here")
    precision: str = option("16-mixed", "Lightning precision (baseline: 16-mixed, which falls back to 32-true without "
                                         "CUDA); auto = bf16-mixed where supported, 16-mixed on Turing, 32-true on CPU")
    train: bool = option(True, "run training")
    test: bool = option(True, "test on Clotho eval after training (best and last checkpoints)")
    load_ckpt_path: Path | None = option(None, "initialise from a checkpoint (weights only; like the "
                                               "baseline, a seed BEATs-copy checkpoint loads too)")
    resume_ckpt_path: Path | None = option(None, "resume a run: optimizer, schedule and data position")
    beats_ckpt_path: Path | None = option(None, "BEATs checkpoint file (required for --audio-encoder beats)")
    logging: bool = option(True, "keep a training log (--logger; --no-logging = none; the baseline's flag, "
                                 "which meant wandb)")
    # ---- audioret options -----------------------------------------------------------------------
    logger: Literal["csv", "tensorboard", "wandb", "none"] = option(
        "csv", "per-step loss/lr/temperature and per-epoch validation log in <out>/logs/ (csv: metrics.csv, what "
               "`audioret report` draws; tensorboard/wandb need pip install 'audioret[tensorboard]' or "
               "'audioret[wandb]')")
    audio_encoder: Literal["beats", "tiny-beats", "passt", "tiny-passt"] = option(
        "beats", "audio encoder: beats (the seed), passt (the official baseline's PaSST, 32 kHz); tiny-beats / "
                 "tiny-passt for tests and the demo")
    passt_ckpt_path: Path | None = option(None, "PaSST weights for --audio-encoder passt: the PaSST release file "
                                                "passt-s-f128-p16-s16-ap.468.pt or a baseline .ckpt (its audio "
                                                "tower); default: --load_ckpt_path")
    s_patchout_t: int = option(15, "PaSST structured patchout in training: time columns dropped (baseline 15)")
    s_patchout_f: int = option(2, "PaSST structured patchout in training: frequency rows dropped (baseline 2)")
    text_model: str | None = option(None, "text model name or folder (overrides roberta-large/--roberta_base; "
                                          "tiny-roberta for tests)")
    audio_trainable: bool = option(False, "fine-tune the audio encoder too (default: frozen in eval mode, "
                                          "the seed's recipe)")
    audio_store: Path | None = option(None, "frozen audio only: take the window vectors (BEATs token means, "
                                            "PaSST (CLS+DIST)/2) from this feature "
                                            "store (same encoder/preprocessing) instead of decoding audio")
    init_heads: Path | None = option(None, "warm-start the projections from a train-heads checkpoint "
                                           "(linear heads with matching shapes)")
    distill_from: Path | None = option(None, "stage 2 of `audioret distill`: teachers artifact computed on the "
                                             "training split (Clotho dev); initialise with --load_ckpt_path")
    loss_weight: float | None = option(None, "weight of the contrastive loss (default 1; 0 with --distill-from)")
    distill_weight: float | None = option(None, "weight of the distillation loss (default 0; 1 with "
                                                "--distill-from, as the paper)")
    max_steps: int = option(-1, "stop after this many optimizer steps (-1 = all epochs)", unit="steps")
    limit_train_batches: int | None = option(None, "batches per training epoch (None = all)", unit="batches")
    limit_val_batches: int | None = option(None, "batches per validation (None = all)", unit="batches")
    out: Path | None = option(None, "run folder (default <checkpoints_path>/finetune-<time>, or the "
                                    "resumed checkpoint's run folder)")
    max_seconds: float = option(30.0, "audio cap, as the baseline's 30 s", unit="s")
    train_crop: Literal["random", "start"] = option("random", "where longer training clips are cut "
                                                              "(random = the baseline; eval always 'start')")
    text_dropout: float = option(0.2, "RoBERTa hidden and attention dropout (baseline 0.2)")
    embed_dim: int = option(1024, "shared embedding width", unit="dims")
    multi_match: Path | None = option(None, "multi-match annotations for the test split (default: the "
                                            "corpus's own metadata_eval.csv if present, else the shipped "
                                            "Clotho-eval file)")
    num_nodes: int = option(1, "nodes for multi-node DDP")
    download: bool = option(False, "let aac-datasets download missing corpora (off: offline first)")
    decode_retries: int = option(10, "a clip that fails to decode is replaced by another random clip; "
                                     "give up after this many failures in a row", unit="tries")
    val_every_n_epochs: int = option(1, "validate every n epochs", unit="epochs")
    checkpoint_every_n_steps: int = option(0, "also refresh checkpoints/last.ckpt every n optimizer steps "
                                              "within an epoch (resume a long epoch mid-way with "
                                              "--resume_ckpt_path .../last.ckpt; 0 = at epoch ends only)",
                                           unit="steps")
    progress: bool = option(True, "show progress: a rich bar on a terminal, one log line per epoch otherwise "
                                  "(SLURM logs, pipes)")
