"""audioret.evaluate: exact retrieval metrics, submission files, and the ``evaluate`` stage.

Pure metrics live in :mod:`audioret.evaluate.metrics` (no file I/O, no Lightning); readers in
:mod:`audioret.evaluate.io`. Metric keys: ``R@1 R@5 R@10 mAP@10`` (single match) and
``mAP@10_multi mAP@16_multi`` (2025 multi-match annotations; mAP@16_multi ranks the challenge).
"""

from audioret.evaluate.metrics import (
    Dedup,
    MultiMatch,
    Ranks,
    dedup_audios,
    match_annotations,
    metrics_from_ranks,
    query_ranks,
    retrieval_metrics,
    score_matrix_ranks,
    top_k,
)

__all__ = ["Dedup", "MultiMatch", "Ranks", "dedup_audios", "match_annotations", "metrics_from_ranks",
           "query_ranks", "retrieval_metrics", "score_matrix_ranks", "top_k"]
