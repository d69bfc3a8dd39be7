"""matplotlib figures of a report (Agg backend, imported lazily: ``audioret --help`` stays instant).

Each function draws one figure from numbers computed in :mod:`audioret.report.data` and writes a PNG;
no numbers are computed here beyond what a plot needs (means for error bars come from data.Group).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .data import Curves, EvalAnalysis, Group, rank_histogram

DPI = 110
# fixed margins: matplotlib's constrained layout doubles the drawing time (0.75 -> 0.35 s CPU per curves figure)
FIXED = {"left": 0.08, "right": 0.98, "top": 0.9, "bottom": 0.09}
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    _plt().close(fig)
    return path


def training_curves(curves: Curves | None, title: str, path: Path) -> Path:
    """2 x 2: loss per step, validation per epoch (best epoch marked), learning rate, temperature."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, 2, figsize=(10, 6.6))
    fig.subplots_adjust(**FIXED, hspace=0.42, wspace=0.22)
    fig.suptitle(title)
    steps = curves.steps if curves else {}
    epochs = curves.epochs if curves else {}
    ax = axes[0][0]
    losses = [k for k in steps if k.startswith("train/") and k not in ("train/lr", "train/tau")]
    if losses:
        for i, key in enumerate(sorted(losses, key=lambda k: k != "train/loss")):
            s = steps[key]
            ax.plot(s.x, s.y, lw=1.2 if key == "train/loss" else 0.9, color=PALETTE[i % len(PALETTE)],
                    label=key.removeprefix("train/"), marker="." if len(s.x) < 30 else None)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    else:
        _empty(ax, "no training loss logged")
    ax.set_title("loss per step")
    ax = axes[0][1]
    shown = [k for k in ("val/mAP@10", "val/mAP@16_multi", "val/mAP@10_multi", "val/R@10", "val/R@1") if k in epochs]
    if shown:
        for i, key in enumerate(shown):
            s = epochs[key]
            ax.plot(s.x, [100 * v for v in s.y], marker="o", ms=3.5, color=PALETTE[i], label=key.removeprefix("val/"))
        if curves and curves.best_epoch is not None:
            ax.axvline(curves.best_epoch, color="0.3", ls="--", lw=1)
            ax.plot([curves.best_epoch], [100 * curves.best_value], marker="*", ms=14, color="gold", mec="k",
                    zorder=5, label=f"best epoch {curves.best_epoch}: {100 * curves.best_value:.2f}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("validation metric (%)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    else:
        _empty(ax, "no validation logged\n(run without a validation split)")
    ax.set_title("validation per epoch")
    for ax, key, label in ((axes[1][0], "train/lr", "learning rate"), (axes[1][1], "train/tau", "temperature |tau|")):
        s = steps.get(key)
        if s and s.x:
            ax.plot(s.x, s.y, color="#444", lw=1.2, marker="." if len(s.x) < 30 else None)
            ax.set_xlabel("optimizer step")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        else:
            _empty(ax, f"no {label} logged")
        ax.set_title(f"{label} per step")
    return _save(fig, path)


def comparison(groups_by_key: dict[str, list[Group]], title: str, path: Path) -> Path:
    """One panel per metric: a bar per group (mean), error bar (std over its runs), a dot per run."""
    plt = _plt()
    keys = list(groups_by_key)
    width = max(4.2, 0.9 * max(len(g) for g in groups_by_key.values()) + 1.5)
    fig, axes = plt.subplots(1, len(keys), figsize=(min(18, width * len(keys)), 4.6), squeeze=False)
    fig.subplots_adjust(**{**FIXED, "bottom": 0.2, "top": 0.86}, wspace=0.3)
    fig.suptitle(title)
    for ax, key in zip(axes[0], keys):
        groups = groups_by_key[key]
        xs = range(len(groups))
        means = [100 * g.mean for g in groups]
        ax.bar(xs, means, yerr=[100 * g.std for g in groups], capsize=4, color=[PALETTE[i % len(PALETTE)] for i in xs],
               alpha=0.55, edgecolor="k", lw=0.6)
        for i, g in enumerate(groups):
            jitter = [i + 0.12 * (j - (len(g.values) - 1) / 2) / max(1, len(g.values) - 1) for j in range(len(g.values))]
            ax.scatter(jitter, [100 * v for v in g.values], color="k", s=14, zorder=3)
            label = f"{means[i]:.2f}" + (f"\n±{100 * g.std:.2f}" if len(g.values) > 1 else "")
            above = max(means[i] + 100 * g.std, 100 * max(g.values))  # over the error bar and the dots
            ax.annotate(label, (i, above), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7.5)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([f"{g.name}\n(n={len(g.values)})" for g in groups], rotation=20 if len(groups) > 3 else 0,
                           ha="right" if len(groups) > 3 else "center", fontsize=8)
        ax.set_ylabel(f"{key} (%)")
        ax.set_title(key)
        ax.grid(axis="y", alpha=0.3)
        ax.set_ylim(0, max([100 * (g.mean + g.std) for g in groups] + [100 * max(g.values) for g in groups] + [1]) * 1.2)
    return _save(fig, path)


def model_table(models: dict[str, dict[str, float]], keys: Sequence[str], title: str, path: Path) -> Path:
    """Grouped bars: one group per model of a printed table, one bar per metric, values in %."""
    plt = _plt()
    names = list(models)
    keys = [k for k in keys if any(k in m for m in models.values())]
    fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(names) + 2), 4.6))
    fig.subplots_adjust(**{**FIXED, "left": 0.06, "top": 0.92})
    width = 0.8 / max(1, len(keys))
    for j, key in enumerate(keys):
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(names))]
        vals = [100 * models[n].get(key, float("nan")) for n in names]
        bars = ax.bar(xs, vals, width, label=key, color=PALETTE[j % len(PALETTE)])
        ax.bar_label(bars, labels=[f"{v:.1f}" if v == v else "" for v in vals], fontsize=6.5, padding=1)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=9)
    ax.set_ylabel("%")
    ax.set_title(title)
    ax.legend(fontsize=8, ncols=min(len(keys), 6), loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    top = max([100 * v for m in models.values() for k, v in m.items() if k in keys] + [1])
    ax.set_ylim(0, top * 1.25)
    return _save(fig, path)


def evaluation(ev: EvalAnalysis, title: str, path: Path) -> Path:
    """Histogram of the first correct rank per query; R@k / mAP@k / mAP@k_multi over k."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    fig.subplots_adjust(**{**FIXED, "bottom": 0.12, "top": 0.86}, wspace=0.2)
    fig.suptitle(title)
    ax = axes[0]
    first = ev.first_ranks
    if first:
        top = ev.ks[-1] if ev.ks else max(first)
        xs, counts, beyond = rank_histogram(first, top)
        ax.bar(xs, counts, width=0.9, color=PALETTE[0])
        if beyond:
            ax.bar([top + 2], [beyond], width=1.6, color="0.5")
            ax.annotate(f"> {top}", (top + 2, beyond), textcoords="offset points", xytext=(0, 3), ha="center",
                        fontsize=8)
        what = "annotated queries (multi-match)" if ev.multi else "captions (single-match)"
        ax.set_xlabel("rank of the first correct clip")
        ax.set_ylabel(f"{what}")
        ax.set_title(f"first correct rank ({len(first)} queries, median {sorted(first)[len(first) // 2]})")
        ax.grid(axis="y", alpha=0.3)
    else:
        _empty(ax, "no per-query ranks")
    ax = axes[1]
    if ev.curves:
        for i, (name, values) in enumerate(ev.curves.items()):
            ax.plot(ev.ks, [100 * v for v in values], label=name, color=PALETTE[i], lw=1.5)
        for k in (10, 16):
            if ev.ks and k <= ev.ks[-1]:
                ax.axvline(k, color="0.6", ls=":", lw=1)
        ax.set_xlabel("k")
        ax.set_ylabel("%")
        ax.set_ylim(0, 100)
        ax.set_title("metrics over the cutoff k")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    else:
        _empty(ax, "no per-query ranks")
    return _save(fig, path)


__all__ = ["training_curves", "comparison", "model_table", "evaluation"]
