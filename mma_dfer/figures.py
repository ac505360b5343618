"""The figures a person reads: the labelled confusion matrix (TensorBoard and the report),
training curves, per-fold points and ablation comparisons.

Drawn with matplotlib's object API (``Figure``, no pyplot): no global state and no display
backend, so they can be drawn inside a training process. :func:`svg` writes text as text
(searchable, selectable) and gives each figure its own element ids, so that many figures can
be inlined in one HTML page.
"""
from __future__ import annotations

import io
import itertools
from typing import Optional, Sequence

import numpy as np

_ids = itertools.count()

OURS, PAPER = "#1f6fb4", "#d1495b"


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # lazy: matplotlib (heavy) only when a figure is drawn

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def per_class_recall(cm) -> list[Optional[float]]:
    """Recall per true class in percent; None for a class with no test clip."""
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(1)
    return [float(100 * cm[i, i] / support[i]) if support[i] else None for i in range(len(cm))]


def confusion_title(dataset: str, fold: int, epoch: int, uar: float, war: float) -> str:
    return f"{dataset.upper()} fold {fold}, epoch {epoch}: UAR {uar:.2f}  WAR {war:.2f} (1-clip)"


def confusion_figure(cm, class_names: Sequence[str], title: str = ""):
    """Rows: true class (with its clip count); columns: predicted class. Each cell shows its
    count on a colour scale of the row's share; the right-hand column is the recall per class."""
    cm = np.asarray(cm, dtype=np.int64)
    n = len(cm)
    if len(class_names) != n:
        raise ValueError(f"{n}x{n} confusion matrix but {len(class_names)} class names")
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    recall = per_class_recall(cm)
    # compact: TensorBoard shrinks an image to its card (~350 px) unless "actual size" is ticked
    size = 1.5 + 0.36 * n
    fig = _figure(size + 0.9, size)
    ax = fig.add_subplot()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    font = 8 if n <= 8 else 7
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=font,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right", rotation_mode="anchor", fontsize=font)
    ax.set_yticks(range(n), [f"{c} ({s})" for c, s in zip(class_names, cm.sum(1))], fontsize=font)
    ax.set_xlabel("predicted class", fontsize=font + 1)
    ax.set_ylabel("true class (test clips)", fontsize=font + 1)
    right = ax.secondary_yaxis("right")
    right.set_yticks(range(n), ["-" if r is None else f"{r:.1f}%" for r in recall], fontsize=font)
    right.set_ylabel("recall", fontsize=font + 1)
    if title:
        ax.set_title(title, fontsize=font + 1)
    return fig


def curves_figure(steps: dict, epochs: dict, x_label: str = "epoch"):
    """Training curves side by side: loss, learning rate, test UAR/WAR.

    ``steps``: {"x": [...], "loss": [...], "lr": [...]} (per logged step, x in epochs);
    ``epochs``: {"x": [...], "uar": [...], "war": [...]} (per evaluation)."""
    fig = _figure(9.6, 2.6)
    axes = fig.subplots(1, 3)
    for ax, key, label in ((axes[0], "loss", "train loss"), (axes[1], "lr", "learning rate")):
        if steps.get(key):
            ax.plot(steps["x"], steps[key], color=OURS, lw=1.2)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel(x_label)
    axes[1].ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax = axes[2]
    # WAR under UAR, as hollow squares around UAR's dots: equal values show both
    for key, style, extra in (("war", "--s", {"ms": 7, "mfc": "none", "zorder": 2, "color": PAPER}),
                              ("uar", "-o", {"ms": 3.5, "zorder": 3, "color": OURS})):
        if epochs.get(key):
            ax.plot(epochs["x"], epochs[key], style, lw=1.2, label=key.upper(), **extra)
    if epochs.get("uar"):
        ax.legend(fontsize=8)
    ax.set_title("test UAR / WAR (%)", fontsize=10)
    ax.set_xlabel(x_label)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    return fig


def _legend(fig) -> None:
    from matplotlib.lines import Line2D  # lazy: as in _figure

    handles = [Line2D([], [], ls="", marker="o", color=OURS, ms=4, label="ours, per fold"),
               Line2D([], [], color=OURS, lw=2.5, label="ours, mean"),
               Line2D([], [], color="black", lw=1, marker="_", ms=8, label="95% CI of the mean"),
               Line2D([], [], color=PAPER, lw=2.5, label="paper")]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8, frameon=False)


def _ci(group: dict, metric: str) -> Optional[list]:
    """A group's interval of the mean for ``metric`` ({"ci": {"uar": [low, high]}}), or None."""
    return (group.get("ci") or {}).get(metric)


def _error_bar(ax, at: float, ci, vertical: bool = True) -> None:
    """The interval of the mean as a capped black bar at ``at``."""
    if ci is None:
        return
    mid, half = (ci[0] + ci[1]) / 2, (ci[1] - ci[0]) / 2
    if vertical:
        ax.errorbar([at], [mid], yerr=[[half], [half]], fmt="none", ecolor="black", elinewidth=1, capsize=4)
    else:
        ax.errorbar([mid], [at], xerr=[[half], [half]], fmt="none", ecolor="black", elinewidth=1, capsize=4)


def folds_figure(groups: list[dict], title: str):
    """Per-fold points, their mean with its 95% interval and the paper's number, for UAR and WAR.

    ``groups``: [{"label": "160 px", "uar": [per-fold], "war": [...], "paper": {"uar", "war"} | None,
    "refused": the aggregator does not average these folds (no mean drawn),
    "ci": {"uar": [low, high], "war": ...} | None}]"""
    fig = _figure(1.8 + 1.6 * max(len(groups), 1), 3.2)
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("uar", "war")):
        for i, g in enumerate(groups):
            vals = [v for v in g[metric] if v is not None]
            if vals:
                ax.plot(np.full(len(vals), i) + np.linspace(-0.12, 0.12, len(vals)), vals, "o", color=OURS, ms=4,
                        clip_on=False)
                if not g.get("refused"):
                    ax.plot([i - 0.3, i + 0.3], [np.mean(vals)] * 2, color=OURS, lw=2.5)
                    _error_bar(ax, i + 0.2, _ci(g, metric))
                else:
                    ax.text(i, 0.02, "not averaged", transform=ax.get_xaxis_transform(), ha="center", fontsize=7,
                            color=PAPER)
            if g.get("paper"):
                ax.plot([i - 0.3, i + 0.3], [g["paper"][metric]] * 2, color=PAPER, lw=2.5)
        ax.set_xticks(range(len(groups)), [g["label"] for g in groups], fontsize=8)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_title(f"{metric.upper()} (%)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        _zoom(ax, [v for g in groups for v in g[metric] if v is not None]
              + [g["paper"][metric] for g in groups if g.get("paper")]
              + [x for g in groups if g[metric] and _ci(g, metric) for x in _ci(g, metric)])
    fig.suptitle(title, fontsize=10)
    _legend(fig)
    return fig


def ablation_figure(rows: list[dict], title: str):
    """One line per variant: ours (per-fold dots, mean and its 95% interval) against the paper.

    ``rows``: [{"label": ..., "uar": [per-fold], "war": [...], "paper": {"uar", "war"} | None,
    "refused": no mean drawn, "ci": {"uar": [low, high], "war": ...} | None}]"""
    fig = _figure(9.0, 1.5 + 0.36 * max(len(rows), 1))
    axes = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(rows))[::-1]
    for ax, metric in zip(axes, ("uar", "war")):
        for yi, r in zip(y, rows):
            vals = [v for v in r[metric] if v is not None]
            if vals:
                ax.plot(vals, np.full(len(vals), yi), "o", color=OURS, ms=4, clip_on=False)
                if not r.get("refused"):
                    ax.plot([np.mean(vals)] * 2, [yi - 0.3, yi + 0.3], color=OURS, lw=2.5)
                    _error_bar(ax, yi - 0.2, _ci(r, metric), vertical=False)
                else:
                    ax.text(0.99, yi + 0.15, "not averaged", transform=ax.get_yaxis_transform(), ha="right",
                            va="bottom", fontsize=7, color=PAPER)
            if r.get("paper"):
                ax.plot([r["paper"][metric]] * 2, [yi - 0.3, yi + 0.3], color=PAPER, lw=2.5)
        ax.set_title(f"{metric.upper()} (%)", fontsize=10)
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.grid(axis="x", alpha=0.3)
        _zoom(ax, [v for r in rows for v in r[metric] if v is not None]
              + [r["paper"][metric] for r in rows if r.get("paper")]
              + [x for r in rows if r[metric] and _ci(r, metric) for x in _ci(r, metric)], axis="x")
    axes[0].set_yticks(y, [r["label"] for r in rows], fontsize=8)
    fig.suptitle(title, fontsize=10)
    _legend(fig)
    return fig


def _zoom(ax, values, axis="y") -> None:
    """Axis range around the values, so that differences of a point or two stay visible."""
    if not values:
        return
    lo, hi = min(values), max(values)
    pad = max(1.5, 0.1 * (hi - lo))
    # a point at 0 or 100 keeps its whole marker in view (the range stays within a pad of [0, 100])
    (ax.set_ylim if axis == "y" else ax.set_xlim)(max(-pad, lo - pad), min(100 + pad, hi + pad))


# -- output ---------------------------------------------------------------------------------

def rgb(fig) -> np.ndarray:
    """The figure as an (H, W, 3) uint8 array (TensorBoard images)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: as in _figure

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def svg(fig) -> str:
    """The figure as an inline ``<svg>`` element: text kept as text, ids unique in the page."""
    import matplotlib  # lazy: as in _figure

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"fig{next(_ids)}",
                                "font.family": ["DejaVu Sans", "sans-serif"]}):
        fig.savefig(buf, format="svg")
    text = buf.getvalue()
    return text[text.index("<svg"):]
