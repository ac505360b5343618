"""The emotion timeline of a long video (``predict --window ... --plot FILE.png``).

Each window's probabilities are drawn as a stacked block over the part of the time axis it
stands for (from the midpoint to its previous window's centre to the midpoint to its next
one), so overlapping windows are neither interpolated nor hidden; a strip above names the top
class over time, and windows in which no face was detected are hatched in both.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from mma_dfer.utils import atomic_write_bytes

NO_FACE_HATCH = "////"


def class_colors(class_names: list[str]) -> list[tuple]:
    """One fixed RGB colour (0-1) per class, in class order: tab10, or tab20 past 10 classes."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(class_names) <= 10 else "tab20"]
    return [tuple(float(c) for c in cmap(i)[:3]) for i in range(len(class_names))]


def segment_edges(records: list[dict]) -> np.ndarray:
    """K+1 time edges for K windows: midpoints between window centres, the first window's
    start and the last one's end outside."""
    centres = np.array([(r["window_start"] + r["window_end"]) / 2 for r in records])
    inner = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[records[0]["window_start"]], inner, [records[-1]["window_end"]]])


def top_class_runs(records: list[dict], edges: np.ndarray) -> list[tuple[str, float, float]]:
    """(class, start, end) of each run of consecutive windows with the same top class."""
    runs = []
    for k, rec in enumerate(records):
        if runs and runs[-1][0] == rec["top_class"]:
            runs[-1] = (rec["top_class"], runs[-1][1], edges[k + 1])
        else:
            runs.append((rec["top_class"], edges[k], edges[k + 1]))
    return runs


def plot_timeline(records: list[dict], class_names: list[str], path: str | Path, title: str) -> Path:
    """Write the PNG (``records`` as ``predict`` writes them, in time order)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    colors = class_colors(class_names)
    edges = segment_edges(records)
    probs = np.array([[r["probabilities"][c] for r in records] for c in class_names])
    probs = np.concatenate([probs, probs[:, -1:]], axis=1)  # the last block's right edge

    fig = Figure(figsize=(12, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 1, height_ratios=[1, 6], hspace=0.06, left=0.06, right=0.84, top=0.9, bottom=0.12)
    strip, ax = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
    ax.stackplot(edges, probs, colors=colors, step="post", linewidth=0)
    total = edges[-1] - edges[0]
    for name, start, end in top_class_runs(records, edges):
        strip.axvspan(start, end, color=colors[class_names.index(name)], linewidth=0)
        if end - start > 0.06 * total:
            strip.text((start + end) / 2, 0.5, name, ha="center", va="center", fontsize=9, color="white",
                       fontweight="bold")
    lost = [k for k, r in enumerate(records) if r.get("faces_detected") == 0]
    for k in lost:
        for axis in (strip, ax):
            axis.axvspan(edges[k], edges[k + 1], facecolor="none", edgecolor="0.15", hatch=NO_FACE_HATCH, linewidth=0)
    for axis in (strip, ax):
        axis.set_xlim(edges[0], edges[-1])
    strip.set_ylim(0, 1)
    strip.set_yticks([])
    strip.set_ylabel("top", rotation=0, ha="right", va="center")
    strip.tick_params(labelbottom=False)
    strip.set_title(title, fontsize=10)
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("class probability")
    handles = [Patch(facecolor=c, label=n) for n, c in zip(class_names, colors)]
    if lost:
        handles.append(Patch(facecolor="white", edgecolor="0.15", hatch=NO_FACE_HATCH, label="no face"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
