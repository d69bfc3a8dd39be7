"""``audioret extract``: thin command line over ``run(config)``."""

from __future__ import annotations

from audioret.config import parse_config
from audioret.errors import report_disk_fault, report_interrupt, report_user_error, user_error_types
from audioret.logs import setup_logging

from .config import ExtractConfig


def main(argv: list[str] | None = None) -> int:
    config = parse_config(ExtractConfig, argv, prog="audioret extract")
    setup_logging()
    try:
        from .pipeline import run

        result = run(config)
    except user_error_types() as err:
        return report_user_error("audioret extract", err)
    except KeyboardInterrupt:   # parts are durable as written; a rerun resumes them
        return report_interrupt("audioret extract")
    except Exception as err:    # a full disk or read-only folder is one line; anything else a traceback
        code = report_disk_fault("audioret extract", err, config.store, "--store")
        if code is None:
            raise
        return code
    return result.exit_code(config.strict)
