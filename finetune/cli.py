"""``audioret finetune`` / ``python -m audioret.finetune``: the baseline's ``d25_t6.train`` flags
(snake_case as the baseline, kebab-case too) over :func:`audioret.finetune.run.run`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from audioret.config import parse_config
from audioret.logs import setup_logging

from .config import FinetuneConfig


def parse_args(argv: list[str] | None = None) -> FinetuneConfig:
    return parse_config(FinetuneConfig, argv, prog="audioret finetune")


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    setup_logging()
    from audioret.errors import is_interrupt, report_interrupt, report_user_error, user_error_types, watch_interrupt

    from .run import run, run_folder

    cfg = dataclasses.replace(cfg, out=run_folder(cfg))  # one folder, named in config.json and any message
    with watch_interrupt() as seen:
        try:
            result = run(cfg)
        except user_error_types() as err:  # wrong path, corpus or checkpoint: one line, exit 2
            return report_user_error("audioret finetune", err)
        except (KeyboardInterrupt, SystemExit) as err:
            if not is_interrupt(err, seen):
                raise
            last = Path(cfg.out) / "checkpoints" / "last.ckpt"
            if not last.is_file():
                return report_interrupt("audioret finetune", f"no checkpoint was written yet in {cfg.out}: rerun "
                                        "the command to start again")
            return report_interrupt("audioret finetune", f"resume with --resume_ckpt_path {last} (the latest "
                                    "completed epoch, or --checkpoint_every_n_steps step)")
    print(json.dumps({k: v for k, v in result.items() if k.startswith("test") or k == "out"}, indent=2))
    return 0
