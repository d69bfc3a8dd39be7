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

    model = cfg.checkpoint is not None or cfg.store is not None
    if model and (cfg.checkpoint is None or cfg.store is None or cfg.predictions is not None):
        raise ValueError("evaluate: give either --predictions FILE, or --checkpoint CKPT with --store STORE")
    if not model and cfg.predictions is None:
        raise ValueError("evaluate: give --predictions FILE (a score matrix or ranked CSV), "
                         "or --checkpoint CKPT --store STORE [--split eval]")
    annotations = list(cfg.annotations)
    if not annotations and (not model or cfg.split == "eval"):
        annotations = [resource_path(CLOTHO_EVAL_MULTI_MATCH)]
        log.info("no --annotations: using the shipped Clotho-eval multi-match annotations %s", annotations[0])
    gt = report.load_ground_truth(annotations)
    if model:
        return _run_model(cfg, gt, annotations, show=show)
    ev = report.evaluate_predictions(cfg.predictions, gt, ks=cfg.ks, skip_unmatched=cfg.skip_unmatched,
                                     chunk_size=cfg.chunk_size)
    if show:
        report.print_report(ev, title=f"{cfg.predictions.name}")
    if cfg.out is not None:
        path = report.write_report(cfg.out, ev, ks=cfg.ks, extra={
            "config": to_dict(cfg), "annotations": [str(p) for p in annotations]})
        log.info("wrote %s", path)
    return ev.metrics


def _run_model(cfg: EvaluateConfig, gt, annotations: list, *, show: bool) -> dict[str, float]:
    """Heads checkpoint over a store split: single-match from the store, multi-match from gt."""
    from audioret.evaluate.model import evaluate_source, load_store_source

    src = load_store_source(cfg.checkpoint, cfg.store, cfg.split, device=cfg.device)
    metrics = evaluate_source(src, gt, cfg.out, ks=cfg.ks, skip_unmatched=cfg.skip_unmatched,
                              chunk_size=cfg.chunk_size, device=cfg.device, show=show)
    return metrics


def guarded_main(config_cls: type, run_fn, argv: list[str] | None, prog: str) -> int:
    """Parse flags into ``config_cls``, call ``run_fn(cfg)``; expected user errors exit 2 with one line."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(config_cls, argv, prog=prog)
    from audioret.store.errors import StoreError

    try:
        run_fn(cfg)
    except (ValueError, FileNotFoundError, StoreError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    return guarded_main(EvaluateConfig, run, argv, "audioret evaluate")
