"""``audioret report RUN_DIR [RUN_DIR ...] --out REPORT``: thin CLI over :func:`audioret.report.build.run`."""

from __future__ import annotations

import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from audioret.config import build_parser, config_from_namespace
    from audioret.errors import report_user_error, user_error_types
    from audioret.logs import setup_logging

    from .build import run
    from .config import ReportConfig

    parser = build_parser(ReportConfig, "audioret report")  # RUN_DIR ...: the positional field ReportConfig.runs
    cfg = config_from_namespace(ReportConfig, parser.parse_args(argv))
    setup_logging(logging.WARNING)
    try:
        page = run(cfg)
    except user_error_types() as err:  # a wrong folder or file: one line, exit 2
        return report_user_error("audioret report", err)
    print(f"report: {page} (open it in a browser; also {page.with_suffix('.md')} and {page.parent / 'figures'}/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
