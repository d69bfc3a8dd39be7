"""``run(config)``: run folders -> numbers (report.data) -> figures (report.figures) -> report files.

Outputs in ``--out``::

    report.html      one self-contained page (figures inline as base64 PNG): open this file
    report.md        the same text and tables, figures linked from figures/
    report.json      every number the report shows (metrics as fractions, as in the runs' files)
    figures/*.png    curves_<run>.png, compare.png, models.png, eval_<run>.png
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audioret.config import atomic_write_text
from audioret.errors import InputError

from . import figures
from .config import ReportConfig
from .data import (EvalAnalysis, QueryRow, Run, best_and_worst, compare_groups, compare_keys, demo_models, discover,
                   labels_for, pct, read_json, read_run)
from .scores import TopFn, evaluate_heads, scores_for

log = logging.getLogger(__name__)

HEADLINE = ("mAP@16_multi", "mAP@10_multi", "mAP@10", "R@1", "R@5", "R@10")


@dataclass
class Report:
    """What a report holds; rendered to markdown and HTML by the same code."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)  # ("h2"|"p"|"table"|"figure", content)
    numbers: dict[str, Any] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)

    def add(self, kind: str, content: Any) -> None:
        self.blocks.append((kind, content))

    def figure_path(self, out: Path, prefix: str, label: str) -> Path:
        """``out/figures/<prefix>_<slug>.png``, unique within this report: labels that slug alike
        ("a/b", "a_b") or a run drawn twice get the label's hash appended instead of overwriting."""
        taken = {f.name for f in self.figures}
        name = f"{prefix}_{slug(label)}"
        k = 0
        while f"{name}.png" in taken:
            k += 1
            name = f"{prefix}_{slug(label)}_{hashlib.sha1(f'{label}#{k}'.encode()).hexdigest()[:8]}"
        return out / "figures" / f"{name}.png"


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", label).strip("_") or "run"


# --------------------------------------------------------------------------- sections

def training_section(rep: Report, run: Run, out: Path) -> None:
    rep.add("h3", f"{run.label} ({run.kind})")
    rep.add("p", f"folder: {run.path}" + (f"; log: {run.curves.source}" if run.curves and run.curves.source else ""))
    for note in run.notes:
        rep.add("p", f"note: {note}")
    c = run.curves
    info: dict[str, Any] = {"kind": run.kind, "path": str(run.path), "metrics": run.metrics}
    if c is not None:
        info.update(best_epoch=c.best_epoch, best_val_mAP10=c.best_value,
                    steps_logged=len(c.steps.get("train/loss").x) if "train/loss" in c.steps else 0,
                    epochs_validated=len(c.epochs.get("val/mAP@10").x) if "val/mAP@10" in c.epochs else 0)
        path = figures.training_curves(c, f"{run.label}: training", rep.figure_path(out, "curves", run.label))
        rep.figures.append(path)
        rep.add("figure", (path, f"{run.label}: loss, validation (best epoch marked), learning rate, temperature"))
        if c.best_epoch is not None:
            rep.add("p", f"best epoch {c.best_epoch}: val mAP@10 {pct(c.best_value)} %")
    rows = [[k, pct(v)] for k, v in sorted(run.metrics.items())]
    if rows:
        rep.add("table", (["metric (metrics.json; val/mAP@10: the selected epoch)", "%"], rows))
    rep.numbers.setdefault("runs", {})[run.label] = info


def comparison_section(rep: Report, runs: list[Run], out: Path) -> None:
    keys = compare_keys(runs)
    if not keys:
        return
    trained = [r for r in runs if r.kind != "evaluation"]
    groups = {k: compare_groups(trained, k) for k in keys}
    rep.add("h2", "Comparison of the runs")
    rep.add("p", "Runs that differ only in their seed are pooled (bar = mean, error bar = standard deviation over "
                 "the seeds, dots = single runs). test/: train-heads and distill runs test the checkpoint selected "
                 "by val/mAP@10, a fine-tune its last epoch (as the demo prints it); val/mAP@10 is the selected "
                 "epoch's score.")
    path = figures.comparison(groups, "runs compared (mean and spread over seeds)", out / "figures" / "compare.png")
    rep.figures.append(path)
    rep.add("figure", (path, "comparison of the runs"))
    rows = []
    for k, gs in groups.items():
        for g in gs:
            rows.append([k, g.name, str(len(g.values)), pct(g.mean), pct(g.std), ", ".join(pct(v) for v in g.values)])
    rep.add("table", (["metric", "group", "runs", "mean %", "std %", "values %"], rows))
    rep.numbers["comparison"] = {k: [{"group": g.name, "runs": g.labels, "values": g.values, "mean": g.mean,
                                      "std": g.std} for g in gs] for k, gs in groups.items()}


def models_section(rep: Report, models: dict[str, dict[str, float]], source: Path, out: Path) -> None:
    rep.add("h2", "Models of the demo (the printed table)")
    rep.add("p", f"from {source}; values in %.")
    path = figures.model_table(models, HEADLINE, "models on the eval split (%)", out / "figures" / "models.png")
    rep.figures.append(path)
    rep.add("figure", (path, "the demo's models"))
    rep.add("table", (["model", *HEADLINE], [[n, *[pct(m.get(k)) for k in HEADLINE]] for n, m in models.items()]))
    rep.numbers["models"] = models


def _query_rows(rows: list[QueryRow], multi: bool, k: int) -> list[list[str]]:
    out = []
    for q in rows:
        hits = set(q.files)
        top = "; ".join(f"{'✔ ' if f in hits else ''}{f} ({s:.3f})" for f, s in q.top) or "-"
        out.append([q.query, f"{q.score:.3f}", str(q.first_rank), ", ".join(q.files[:4]) + (" ..." if len(q.files) > 4 else ""),
                    top])
    return out


def evaluation_section(rep: Report, run: Run, ev: EvalAnalysis, cfg: ReportConfig, out: Path,
                       top_fn: TopFn | None = None, where: str = "") -> None:
    rep.add("h3", f"{run.label} (evaluation)" if run.kind == "evaluation" else f"{run.label} (scored with --store)")
    rep.add("p", f"folder: {run.path}; {len(ev.single)} captions (single-match), {len(ev.multi)} annotated queries "
                 f"(multi-match)" + (f"; ranks known up to {ev.rank_limit}" if ev.rank_limit else ""))
    path = figures.evaluation(ev, f"{run.label}: per-query analysis", rep.figure_path(out, "eval", run.label))
    rep.figures.append(path)
    rep.add("figure", (path, f"{run.label}: first correct rank and metrics over k"))
    check = []
    for name, key, k in (("R@k", "R@10", 10), ("mAP@k", "mAP@10", 10), ("mAP@k_multi", "mAP@10_multi", 10),
                         ("mAP@k_multi", "mAP@16_multi", 16)):
        if name in ev.curves and k in ev.ks:
            check.append([key, pct(ev.curves[name][ev.ks.index(k)]), pct(ev.metrics.get(key))])
    if check:
        rep.add("table", (["metric", "curve at k, %", "metrics.json, %"], check))
    if top_fn is None:
        top_fn, where = scores_for(run.config, cfg.predictions, ev)
    multi = bool(ev.multi)
    score_k = 16 if multi else 10
    best, worst = best_and_worst(ev.queries, cfg.top)
    for q in {id(q): q for q in [*best, *worst]}.values():
        if top_fn is not None:
            q.top = top_fn(q.query, cfg.results) or []
    what = f"AP@{score_k} (multi-match)" if multi else "reciprocal rank within 10 (single-match)"
    head = ["query", what, "first correct rank", "relevant", f"top {cfg.results} results (✔ = relevant; score)"]
    rep.add("p", f"top results: {where}")
    rep.add("h4", f"{len(best)} best queries")
    rep.add("table", (head, _query_rows(best, multi, score_k)))
    rep.add("h4", f"{len(worst)} worst queries")
    rep.add("table", (head, _query_rows(worst, multi, score_k)))
    rep.numbers.setdefault("evaluations", {})[run.label] = {
        "path": str(run.path), "metrics": ev.metrics, "ks": ev.ks, "curves": ev.curves,
        "first_ranks": ev.first_ranks, "scores_from": where,
        "best": [{"query": q.query, "score": q.score, "first_rank": q.first_rank, "top": q.top} for q in best],
        "worst": [{"query": q.query, "score": q.score, "first_rank": q.first_rank, "top": q.top} for q in worst]}


# --------------------------------------------------------------------------- rendering

def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(rep: Report, out: Path) -> str:
    lines = [f"# {rep.title}", ""]
    for kind, content in rep.blocks:
        if kind in ("h2", "h3", "h4"):
            lines += ["#" * int(kind[1]) + " " + content, ""]
        elif kind == "p":
            lines += [content, ""]
        elif kind == "figure":
            path, alt = content
            lines += [f"![{alt}]({path.relative_to(out).as_posix()})", ""]
        elif kind == "table":
            head, rows = content
            lines += ["| " + " | ".join(_md_cell(h) for h in head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows] + [""]
    return "\n".join(lines)


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1180px;margin:2em auto;
padding:0 1em;color:#222}h1{border-bottom:2px solid #ddd}h2{margin-top:2em;border-bottom:1px solid #eee}
img{max-width:100%;border:1px solid #eee}table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.86em}
td,th{border:1px solid #ddd;padding:.25em .55em;vertical-align:top}th{background:#f5f5f5}
td:not(:first-child){font-variant-numeric:tabular-nums}p{line-height:1.4}"""


def to_html(rep: Report) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(rep.title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(rep.title)}</h1>"]
    for kind, content in rep.blocks:
        if kind in ("h2", "h3", "h4"):
            parts.append(f"<{kind}>{html.escape(content)}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(content)}</p>")
        elif kind == "figure":
            path, alt = content
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            parts.append(f"<figure><img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'></figure>")
        elif kind == "table":
            head, rows = content
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in head) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows]
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --------------------------------------------------------------------------- run

def collect(paths: list[Path]) -> tuple[list[Run], list[tuple[Path, dict[str, dict[str, float]]]]]:
    """Every run folder under the given paths (labelled relative to their common parent) and the demo
    tables (``summary.json`` with ``models``) of the given folders."""
    if not paths:
        raise InputError("give at least one RUN_DIR (a run folder, a sweep, a distill run or a demo folder)")
    for p in paths:
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: no such run folder; give folders written by train-heads, finetune, "
                                    "distill, evaluate --out or the demo")
    folders = list(dict.fromkeys(f for p in paths for f in discover(p)))
    tables = [(p / "summary.json", m) for p in paths if (m := demo_models(read_json(p / "summary.json")))]
    if not folders and not tables:
        raise ValueError(f"{', '.join(map(str, paths))}: no run found (a run folder holds metrics.json, heads.pt, "
                         "logs/metrics.csv or an evaluation's ranks_*.csv)")
    return [read_run(f, label) for f, label in zip(folders, labels_for(folders))], tables


def run(cfg: ReportConfig) -> Path:
    """Write the report of ``cfg.runs`` into ``cfg.out``; returns the path of report.html."""
    t0 = time.perf_counter()
    runs, tables = collect([Path(p) for p in cfg.runs])
    out = Path(cfg.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for old in (out / "figures").glob("*.png"):  # a rerun shows only this report's figures
        old.unlink()
    rep = Report(cfg.title)
    rep.add("p", f"{len(runs)} run folder(s): " + ", ".join(r.label for r in runs) + ". Metrics in %.")
    for source, models in tables:
        models_section(rep, models, source, out)
    comparison_section(rep, runs, out)
    trained = [r for r in runs if r.kind != "evaluation"]
    if trained:
        rep.add("h2", "Training curves")
        for r in trained:
            training_section(rep, r, out)
    evaluated = [r for r in runs if r.evaluation is not None]
    scored = [r for r in trained if cfg.store is not None and (r.path / "heads.pt").is_file()]
    if evaluated or scored:
        rep.add("h2", "Evaluation: per-query analysis")
        for r in evaluated:
            evaluation_section(rep, r, r.evaluation, cfg, out)
        for r in scored:  # --store: heads scored here, as audioret evaluate --store would
            ev, top_fn = evaluate_heads(r.path / "heads.pt", cfg.store, cfg.split)
            where = f"{cfg.store} ({cfg.split})"
            evaluation_section(rep, r, ev, cfg, out, top_fn, f"recomputed: {r.path / 'heads.pt'} on {where}")
    for r in runs:
        if r.kind == "evaluation" and r.evaluation is None:
            rep.numbers.setdefault("runs", {})[r.label] = {"kind": r.kind, "path": str(r.path), "metrics": r.metrics}
    rep.numbers["figures"] = [p.relative_to(out).as_posix() for p in rep.figures]
    atomic_write_text(out / "report.md", to_markdown(rep, out))
    atomic_write_text(out / "report.json", json.dumps(rep.numbers, indent=2, default=str) + "\n")
    page = atomic_write_text(out / "report.html", to_html(rep))
    log.info("report: %d figures in %.1f s -> %s", len(rep.figures), time.perf_counter() - t0, page)
    return page


__all__ = ["Report", "run", "collect", "to_markdown", "to_html", "slug"]
