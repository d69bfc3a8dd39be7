"""The numbers of a report, read from run folders (files are the interface: no training code imported).

Pure functions over what the stages write:

- a training run (train-heads, finetune, a distill stage): ``metrics.json`` and the CSV log
  ``logs/metrics.csv`` (finetune) or ``logs/version_N/metrics.csv`` (train-heads, the newest N):
  per-step ``train/loss``, ``train/lr``, ``train/tau``, per-epoch ``val/*``;
- an evaluation (``audioret evaluate --out``): ``metrics.json`` and the per-query ranks
  ``ranks_single.csv`` (caption, file_name, rank) / ``ranks_multi.csv`` (query, file_name, rank, AP@k);
- the demo's ``summary.json`` (the printed table, model by model).

Metrics are fractions in [0, 1] as in the files; the report shows them in % with 2 decimals.
"""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from audioret.evaluate import metrics as M

STEP_KEYS = ("train/loss", "train/lr", "train/tau")
BEST_KEY = "val/mAP@10"  # what the checkpoint callbacks select on
COMPARE_KEYS = ("test/mAP@16_multi", "test/mAP@10", "test/R@10", "val/mAP@10")
SKIP_DIRS = {"checkpoints", "logs", "corpus", "predictions", "teachers", "wandb", "embeddings", "__pycache__"}
RUN_FILES = ("metrics.json", "heads.pt", "ranks_single.csv", "ranks_multi.csv")


# --------------------------------------------------------------------------- training logs

@dataclass
class Series:
    """One logged quantity: x (step or epoch) and y, in log order."""

    x: list[int] = field(default_factory=list)
    y: list[float] = field(default_factory=list)


@dataclass
class Curves:
    """Per-step train series and per-epoch validation series of one run."""

    source: Path | None
    steps: dict[str, Series] = field(default_factory=dict)   # train/* by optimizer step
    epochs: dict[str, Series] = field(default_factory=dict)  # val/* by epoch
    best_epoch: int | None = None
    best_value: float | None = None


def find_log(run: Path) -> Path | None:
    """The run's CSV log: ``logs/metrics.csv``, else the newest ``logs/version_N/metrics.csv``."""
    direct = run / "logs" / "metrics.csv"
    if direct.is_file():
        return direct
    versions = []
    for p in (run / "logs").glob("version_*/metrics.csv"):
        m = re.fullmatch(r"version_(\d+)", p.parent.name)
        if m:
            versions.append((int(m.group(1)), p))
    return max(versions)[1] if versions else None


def _number(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_log(rows: Sequence[dict[str, str]], source: Path | None = None) -> Curves:
    """Lightning CSV rows -> Curves. train/* rows go by ``step``, val/* rows by ``epoch``; the best
    epoch is the first with the highest val/mAP@10 (ModelCheckpoint keeps the first of equal scores)."""
    curves = Curves(source)
    for row in rows:
        step, epoch = _number(row.get("step")), _number(row.get("epoch"))
        for key, text in row.items():
            value = _number(text)
            if value is None or key in ("step", "epoch"):
                continue
            if key.startswith("train/") and step is not None:
                s = curves.steps.setdefault(key.removesuffix("_step"), Series())
                s.x.append(int(step))
                s.y.append(value)
            elif key.startswith("val/") and epoch is not None:
                s = curves.epochs.setdefault(key, Series())
                s.x.append(int(epoch))
                s.y.append(value)
    best = curves.epochs.get(BEST_KEY)
    if best and best.y:
        i = max(range(len(best.y)), key=lambda j: (best.y[j], -j))
        curves.best_epoch, curves.best_value = best.x[i], best.y[i]
    return curves


def read_curves(run: Path) -> Curves | None:
    path = find_log(run)
    if path is None:
        return None
    with open(path, newline="", encoding="utf-8") as f:
        return parse_log(list(csv.DictReader(f)), path)


# --------------------------------------------------------------------------- metrics.json of any stage

def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def flat_metrics(data: Any) -> dict[str, float]:
    """metrics.json of any stage -> {"val/mAP@10": x, "test/mAP@16_multi": y, ...}.

    train-heads: already flat (``test/`` = the best-by-validation checkpoint). finetune: ``test/`` = the
    last epoch (``test_last``, what the demo prints), ``test_best/`` = the best-by-validation checkpoint.
    evaluate: its ``metrics`` as ``test/``."""
    if not isinstance(data, dict):
        return {}
    out: dict[str, float] = {}
    if isinstance(data.get("metrics"), dict):  # evaluate --out
        return {f"test/{k}": float(v) for k, v in data["metrics"].items() if isinstance(v, (int, float))}
    for k, v in data.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and "/" in k:
            out[k] = float(v)
    nested = {"test_last": "test", "test_best": "test_best", "val_last": "val_last"}
    for key, prefix in nested.items():
        if isinstance(data.get(key), dict):
            out.update({f"{prefix}/{k}": float(v) for k, v in data[key].items() if isinstance(v, (int, float))})
    return out


# --------------------------------------------------------------------------- evaluation analysis

@dataclass
class QueryRow:
    """One query of an evaluation: its relevant files and their ranks (1-based)."""

    query: str
    files: list[str]
    ranks: list[int]
    score: float  # AP@k (multi) or 1/rank within k (single): what best/worst are sorted by
    top: list[tuple[str, float]] = field(default_factory=list)  # (file, model score), best first

    @property
    def first_rank(self) -> int:
        return min(self.ranks)


@dataclass
class EvalAnalysis:
    """Per-query ranks of one evaluation and the curves over k computed from them."""

    source: Path
    metrics: dict[str, float]
    single: list[int] = field(default_factory=list)          # rank of each caption's own audio
    multi: list[QueryRow] = field(default_factory=list)      # annotated queries
    single_rows: list[QueryRow] = field(default_factory=list)
    rank_limit: int | None = None                            # ranks > K unknown (ranked-list input)
    num_audios: int | None = None
    ks: list[int] = field(default_factory=list)
    curves: dict[str, list[float]] = field(default_factory=dict)  # name -> value per k in ks

    @property
    def queries(self) -> list[QueryRow]:
        """The rows best/worst are picked from: multi-match queries when annotated, else captions."""
        return self.multi or self.single_rows

    @property
    def first_ranks(self) -> list[int]:
        return [q.first_rank for q in self.queries]


def ranks_from_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def group_multi(rows: Sequence[dict[str, str]], k: int) -> list[QueryRow]:
    """ranks_multi.csv rows (one per relevant file) -> one QueryRow per query, file order kept."""
    by_query: dict[str, QueryRow] = {}
    for r in rows:
        q = by_query.setdefault(r["query"], QueryRow(r["query"], [], [], 0.0))
        q.files.append(r["file_name"])
        q.ranks.append(int(r["rank"]))
    for q in by_query.values():
        q.score = M.average_precision_at_k(q.ranks, k)
    return list(by_query.values())


def curve_ks(max_rank: int, limit: int | None, most: int = 50) -> list[int]:
    """k = 1..K for the curves: up to the largest rank seen (at most ``most``), never past a ranked
    list's K (ranks beyond it are unknown)."""
    top = min(max(1, max_rank), most)
    if limit is not None:
        top = min(top, limit)
    return list(range(1, top + 1))


def eval_curves(single: Sequence[int], multi: Sequence[Sequence[int]], ks: Sequence[int]) -> dict[str, list[float]]:
    """R@k and mAP@k (single-match) and mAP@k_multi over k, with evaluate's own metric functions
    (so k = 10 / 16 equal the evaluation's metrics.json)."""
    out: dict[str, list[float]] = {}
    if single:
        t = torch.tensor(list(single), dtype=torch.long)
        out["R@k"] = [M.recall_at_k(t, k) for k in ks]
        out["mAP@k"] = [M.map_single_at_k(t, k) for k in ks]
    if multi:
        out["mAP@k_multi"] = [M.map_multi_at_k(multi, k) for k in ks]
    return out


def read_evaluation(folder: Path, *, score_k: int = 16) -> EvalAnalysis | None:
    """An ``evaluate --out`` folder -> EvalAnalysis (None without per-query ranks)."""
    single_csv, multi_csv = folder / "ranks_single.csv", folder / "ranks_multi.csv"
    if not single_csv.is_file() and not multi_csv.is_file():
        return None
    data = read_json(folder / "metrics.json") or {}
    ev = EvalAnalysis(folder, {k: float(v) for k, v in (data.get("metrics") or {}).items()},
                      rank_limit=data.get("rank_limit"), num_audios=(data.get("counts") or {}).get("audios"))
    if single_csv.is_file():
        rows = ranks_from_csv(single_csv)
        ev.single = [int(r["rank"]) for r in rows]
        ev.single_rows = [QueryRow(r["caption"], [r["file_name"]], [int(r["rank"])],
                                   1.0 / int(r["rank"]) if int(r["rank"]) <= 10 else 0.0) for r in rows]
    if multi_csv.is_file():
        ev.multi = group_multi(ranks_from_csv(multi_csv), score_k)
    return finish_analysis(ev)


def finish_analysis(ev: EvalAnalysis) -> EvalAnalysis:
    ranks = ev.single + [r for q in ev.multi for r in q.ranks]
    ev.ks = curve_ks(ev.num_audios or max(ranks, default=1), ev.rank_limit)
    ev.curves = eval_curves(ev.single, [q.ranks for q in ev.multi], ev.ks)
    return ev


def best_and_worst(rows: Sequence[QueryRow], n: int = 10) -> tuple[list[QueryRow], list[QueryRow]]:
    """(n best, n worst) queries: by score, then by the first correct rank, then text (stable)."""
    best = sorted(rows, key=lambda q: (-q.score, q.first_rank, q.query))[:n]
    worst = sorted(rows, key=lambda q: (q.score, -q.first_rank, q.query))[:n]
    return best, worst


def rank_histogram(first_ranks: Sequence[int], top: int) -> tuple[list[int], list[int], int]:
    """(ranks 1..top, queries per rank, queries beyond top): the first-correct-rank histogram."""
    counts = [0] * top
    beyond = 0
    for r in first_ranks:
        if r <= top:
            counts[r - 1] += 1
        else:
            beyond += 1
    return list(range(1, top + 1)), counts, beyond


def top_results(scores: torch.Tensor, fnames: Sequence[str], n: int = 5) -> list[tuple[str, float]]:
    """The ``n`` best audios of one score row [A], evaluate's tie rule (equal scores: lower index first)."""
    order = torch.argsort(-scores.float(), stable=True)[:n]
    return [(fnames[i], float(scores[i])) for i in order.tolist()]


# --------------------------------------------------------------------------- runs and their comparison

@dataclass
class Run:
    """One folder of the report."""

    label: str
    path: Path
    kind: str  # "heads" | "finetune" | "evaluation"
    metrics: dict[str, float] = field(default_factory=dict)
    curves: Curves | None = None
    evaluation: EvalAnalysis | None = None
    config: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def is_run(folder: Path) -> bool:
    return any((folder / f).is_file() for f in RUN_FILES) or find_log(folder) is not None


def discover(root: Path, depth: int = 3) -> list[Path]:
    """``root`` if it is a run folder, and the run folders below it (sweeps, distill stages, a demo, an
    evaluation written into its run's folder), in name order; stores (``*.zarr``), checkpoints and logs are
    not searched."""
    found: list[Path] = [root] if is_run(root) else []
    if depth == 0 or not root.is_dir():
        return found
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if child.name in SKIP_DIRS or child.suffix == ".zarr" or child.name.startswith("."):
            continue
        found += discover(child, depth - 1)
    return found


def run_kind(folder: Path, data: Any) -> str:
    if (folder / "ranks_single.csv").is_file() or (folder / "ranks_multi.csv").is_file() or (
            isinstance(data, dict) and isinstance(data.get("metrics"), dict)):
        return "evaluation"
    if isinstance(data, dict) and any(k in data for k in ("test_last", "val_last", "global_step")):
        return "finetune"
    return "heads"


def labels_for(paths: Sequence[Path]) -> list[str]:
    """Short unique labels: each path relative to the deepest common parent (one run: its name)."""
    resolved = [p.resolve() for p in paths]
    if len(resolved) == 1:
        return [resolved[0].name or str(resolved[0])]
    parts = [p.parts for p in resolved]
    common = 0
    while all(len(x) > common + 1 for x in parts) and len({x[common] for x in parts}) == 1:
        common += 1
    labels = ["/".join(x[common:]) for x in parts]
    return labels if len(set(labels)) == len(labels) else [str(p) for p in paths]


def read_run(folder: Path, label: str) -> Run:
    data = read_json(folder / "metrics.json")
    kind = run_kind(folder, data)
    run = Run(label, folder, kind, flat_metrics(data))
    config = read_json(folder / "config.json")
    run.config = config if isinstance(config, dict) else {}
    if kind == "evaluation":
        run.evaluation = read_evaluation(folder)
    else:
        run.curves = read_curves(folder)
        if run.curves is not None and run.curves.best_value is not None and BEST_KEY not in run.metrics:
            run.metrics[BEST_KEY] = run.curves.best_value  # finetune: the selected epoch's score, from its log
        if run.curves is None:
            run.notes.append("no CSV training log (logs/metrics.csv): trained with --logger none, "
                             "tensorboard or wandb, or before logs were kept")
    if kind == "heads":
        added = {k: v for k, v in distill_metrics(folder).items() if k not in run.metrics}
        if added:
            run.metrics.update(added)
            run.notes.append(f"{', '.join(added)}: from the distill run's table {folder.parent.parent / 'compare.json'} "
                             "(audioret evaluate on its --test split, with its --multi-match annotations)")
    if data is None and kind != "evaluation":
        run.notes.append("no metrics.json: the run did not finish")
    return run


DISTILL_STAGES = ("stage1", "stage2", "control")


def distill_metrics(folder: Path) -> dict[str, float]:
    """A distill stage run's (``D/stage2/seed=1``) row of its distill table ``D/compare.json`` as ``test/*``:
    the stage's own metrics.json lacks what only that table has (mAP@k_multi from ``--multi-match``)."""
    stage, seed = folder.parent.name, folder.name.removeprefix("seed=")
    if stage not in DISTILL_STAGES or seed == folder.name:
        return {}
    rows = read_json(folder.parent.parent / "compare.json")
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and row.get("stage") == stage and str(row.get("seed")) == seed:
            return {k if k.startswith("val/") else f"test/{k}": float(v) for k, v in row.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("seed",)}
    return {}


SEED_RE = re.compile(r"(^|[_/])seed=[^_/]+")


def group_of(label: str) -> str:
    """A run's group for the comparison: its label without ``seed=N`` (seeds of one setting pool)."""
    name = SEED_RE.sub(lambda m: m.group(1) if m.group(1) == "/" else "", label).strip("_/")
    name = re.sub(r"/+", "/", name).replace("/_", "/")
    return name or "runs"


@dataclass
class Group:
    name: str
    labels: list[str]
    values: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation over the runs (0 for one run), as distill's compare table."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0


def compare_groups(runs: Sequence[Run], key: str) -> list[Group]:
    """Runs that have ``key`` pooled by :func:`group_of`, in first-seen order."""
    groups: dict[str, Group] = {}
    for r in runs:
        if key in r.metrics:
            g = groups.setdefault(group_of(r.label), Group(group_of(r.label), [], []))
            g.labels.append(r.label)
            g.values.append(r.metrics[key])
    return list(groups.values())


def compare_keys(runs: Sequence[Run]) -> list[str]:
    """The comparison's metrics: those of :data:`COMPARE_KEYS` that at least two training runs have."""
    trained = [r for r in runs if r.kind != "evaluation"]
    return [k for k in COMPARE_KEYS if sum(k in r.metrics for r in trained) >= 2]


def demo_models(summary: Any) -> dict[str, dict[str, float]]:
    """The demo's printed table (``summary.json`` ``models``): model -> metrics."""
    if not isinstance(summary, dict) or not isinstance(summary.get("models"), dict):
        return {}
    return {str(name): {k: float(v) for k, v in m.items() if isinstance(v, (int, float))}
            for name, m in summary["models"].items() if isinstance(m, dict)}


def pct(value: float | None) -> str:
    """A metric as the tables print it: % with 2 decimals."""
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.2f}"


__all__ = ["Series", "Curves", "find_log", "parse_log", "read_curves", "flat_metrics", "QueryRow", "EvalAnalysis",
           "read_evaluation", "finish_analysis", "group_multi", "curve_ks", "eval_curves", "best_and_worst",
           "rank_histogram", "top_results", "Run", "discover", "read_run", "distill_metrics", "labels_for",
           "group_of", "Group", "compare_groups", "compare_keys", "demo_models", "pct"]
