"""``audioret train-heads``: thin CLI over ``run(config)``."""

from __future__ import annotations

from audioret.config import build_parser, config_from_namespace
from audioret.logs import setup_logging

from .config import TrainHeadsConfig

EPILOG = """\
defaults, chosen by measurement on FROZEN features (not copied from the fine-tuned baseline).
Measured: tiny random encoders over the synthetic corpus (600/200/200 clips), 10 epochs, test mAP@10,
chance 0.015 (and the design prototype's numbers, README "Measured"):
  text pooling   mean      first-token: 0.015 (= chance: a frozen <s> carries nothing; the seed's
                           first-token pooling works because it fine-tunes RoBERTa); mean: 0.063-0.089
  audio pooling  mean-std  segment-mean 0.063, mean 0.076, attention 0.076, mean-std 0.089
                           (prototype: mean+std beat mean by 0.07-0.16)
  projection     mlp       linear 0.084, mlp 0.089 (prototype: +0.05-0.10)
  max lr         1e-3      heads on frozen features need far more than the fine-tuning 2e-5
  floor          ridge     closed-form sklearn head: 0.062, fitted in ~2 s
  --seq-layers 1 or 2 adds a small trainable transformer over the cached sequence: the cheap way
  to win back part of what fine-tuning the text encoder buys.
  The exact baseline head: --audio-pooling segment-mean --text-pooling first --projection linear

examples:
  audioret train-heads --store features/clotho.zarr --train dev --val val --test eval --max-epochs 20
  audioret train-heads --store features/clotho.zarr --seeds 1 2 3 --lrs 3e-4 1e-3   (sweep: one table)
"""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(TrainHeadsConfig, "audioret train-heads")
    parser.epilog = EPILOG
    cfg = config_from_namespace(TrainHeadsConfig, parser.parse_args(argv))
    if cfg.store is None:
        parser.error("--store is required (a feature store written by `audioret extract`)")
    setup_logging()
    from audioret.errors import is_interrupt, report_interrupt, report_user_error, user_error_types, watch_interrupt

    from .run import run

    with watch_interrupt() as seen:
        try:
            run(cfg)
        except user_error_types() as err:  # wrong path, store or checkpoint: one line, exit 2
            return report_user_error("audioret train-heads", err)
        except (KeyboardInterrupt, SystemExit) as err:
            if not is_interrupt(err, seen):
                raise
            return report_interrupt("audioret train-heads", f"checkpoints/last.ckpt under {cfg.out} holds each "
                                    "run's latest completed epoch (heads.pt is written at the end): rerun to train "
                                    "again")
    return 0
