"""``audioret evaluate``: thin CLI over :func:`run`."""

from __future__ import annotations

import logging
import sys

from audioret.config import parse_config, to_dict
from audioret.evaluate.config import EvaluateConfig

log = logging.getLogger(__name__)


def run(cfg: EvaluateConfig, *, show: bool = True) -> dict[str, float]:
    """Score ``cfg.predictions`` (or a model, once wired) and write the report; returns the metrics."""
    from audioret.evaluate import report
    from audioret.resources import CLOTHO_EVAL_MULTI_MATCH, resource_path

    if cfg.checkpoint is not None or cfg.store is not None:
        raise NotImplementedError("evaluate --checkpoint/--store is not wired to audioret.models yet; "
                                  "write a submission with your model and score it with --predictions, "
                                  "or call audioret.evaluate.report.score_and_report(embeddings...)")
    if cfg.predictions is None:
        raise ValueError("evaluate: give --predictions FILE (a score matrix or ranked CSV)")
    annotations = list(cfg.annotations) or [resource_path(CLOTHO_EVAL_MULTI_MATCH)]
    if not cfg.annotations:
        log.info("no --annotations: using the shipped Clotho-eval multi-match annotations %s", annotations[0])
    gt = report.load_ground_truth(annotations)
    ev = report.evaluate_predictions(cfg.predictions, gt, ks=cfg.ks, skip_unmatched=cfg.skip_unmatched,
                                     chunk_size=cfg.chunk_size)
    if show:
        report.print_report(ev, title=f"{cfg.predictions.name}")
    if cfg.out is not None:
        path = report.write_report(cfg.out, ev, ks=cfg.ks, extra={
            "config": to_dict(cfg), "annotations": [str(p) for p in annotations]})
        log.info("wrote %s", path)
    return ev.metrics


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(EvaluateConfig, argv, prog="audioret evaluate")
    try:
        run(cfg)
    except (ValueError, FileNotFoundError, NotImplementedError) as e:
        print(f"audioret evaluate: error: {e}", file=sys.stderr)
        return 2
    return 0
