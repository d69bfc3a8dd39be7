"""``audioret extract``: thin command line over ``run(config)``."""

from __future__ import annotations

import logging
import sys

from audioret.config import parse_config
from audioret.corpora import CorpusError
from audioret.store import StoreError

from .config import ExtractConfig


def main(argv: list[str] | None = None) -> int:
    config = parse_config(ExtractConfig, argv, prog="audioret extract")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from .pipeline import run

    try:
        result = run(config)
    except (StoreError, CorpusError, ValueError, FileNotFoundError) as err:
        print(f"audioret extract: error: {err}", file=sys.stderr)
        return 2
    return result.exit_code(config.strict)
