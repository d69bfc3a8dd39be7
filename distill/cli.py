"""``audioret distill``: two-stage training with estimated correspondences (thin CLI over ``run``).

    audioret distill teachers --checkpoints A/heads.pt B/heads.pt --store S --split dev --out T
    audioret distill run --store S --train dev --val val --test eval --teachers 3 --out DIR [train-heads flags]
"""

from __future__ import annotations

from audioret.config import build_parser, config_from_namespace
from audioret.errors import report_user_error, user_error_types
from audioret.logs import setup_logging

from .config import DistillRunConfig, TeachersConfig

USAGE = """usage: audioret distill {teachers,run} ...

  teachers   run stage-1 checkpoints (train-heads or finetune) once over a training split -> artifact
  run        stage 1 (N seeds) -> ensemble teachers -> stage 2 -> stage 1 vs stage 2 table (heads on a store)

stage 2 itself is a flag of the trainers:
  audioret train-heads --store S --init-from STAGE1/heads.pt --distill-from TEACHERS
  audioret finetune --load_ckpt_path STAGE1.ckpt --distill-from TEACHERS
(--loss-weight / --distill-weight: defaults 0 and 1 with --distill-from, as the paper)
"""

RUN_EPILOG = """\
every other flag is an `audioret train-heads` flag (architecture, --max-lr, --max-epochs, --batch-size, ...)
and applies to stage 1, stage 2 and the control. Example:
  audioret distill run --store features/clotho.zarr --teachers 3 --out runs/distill --max-epochs 20 \\
      --multi-match data/CLOTHO_v2.1/clotho_csv_files/metadata_eval.csv
"""


def main(argv: list[str] | None = None) -> int:
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or args[0] not in ("teachers", "run"):
        print(USAGE)
        return 0 if args and args[0] in ("-h", "--help") else 2
    setup_logging()
    command, rest = args[0], args[1:]
    if command == "teachers":
        parser = build_parser(TeachersConfig, "audioret distill teachers")
        cfg = config_from_namespace(TeachersConfig, parser.parse_args(rest))
        if not cfg.checkpoints:
            parser.error("--checkpoints is required (one or more stage-1 checkpoints)")
        from .teachers import run as run_teachers

        try:
            print(run_teachers(cfg))
        except user_error_types() as err:
            return report_user_error("audioret distill teachers", err)
        return 0
    from audioret.train_heads.config import TrainHeadsConfig

    parser = build_parser(DistillRunConfig, "audioret distill run", sections={"heads": TrainHeadsConfig})
    parser.epilog = RUN_EPILOG
    ns = parser.parse_args(rest)  # the flags DistillRunConfig does not know go to the heads section
    cfg = config_from_namespace(DistillRunConfig, ns)
    if cfg.store is None:
        parser.error("--store is required (a feature store written by `audioret extract`)")
    heads = config_from_namespace(TrainHeadsConfig, ns.heads)
    from .flow import run as run_flow

    try:
        run_flow(cfg, heads)
    except user_error_types() as err:
        return report_user_error("audioret distill run", err)
    return 0
