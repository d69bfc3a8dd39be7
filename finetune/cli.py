"""``audioret finetune`` / ``python -m audioret.finetune``: the baseline's ``d25_t6.train`` flags
(snake_case as the baseline, kebab-case too) over :func:`audioret.finetune.run.run`."""

from __future__ import annotations

import json

from audioret.config import parse_config
from audioret.logs import setup_logging

from .config import FinetuneConfig


def parse_args(argv: list[str] | None = None) -> FinetuneConfig:
    return parse_config(FinetuneConfig, argv, prog="audioret finetune")


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    setup_logging()
    from audioret.errors import report_user_error, user_error_types

    from .run import run

    try:
        result = run(cfg)
    except user_error_types() as err:  # wrong path, corpus or checkpoint: one line, exit 2
        return report_user_error("audioret finetune", err)
    print(json.dumps({k: v for k, v in result.items() if k.startswith("test") or k == "out"}, indent=2))
    return 0
