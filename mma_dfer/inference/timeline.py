"""The emotion timeline of a long video (``predict --window ... --plot FILE.png``).

Each window's probabilities are drawn as a stacked block over the part of the time axis it
stands for (from the midpoint to its previous window's centre to the midpoint to its next
one), so overlapping windows are neither interpolated nor hidden; a strip above names the top
class over time (its name with a "?" where its probability is near chance), and windows
with a face in fewer than half of their frames are hatched in both.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from mma_dfer.utils import atomic_write_bytes

NO_FACE_HATCH = "////"
# A top class whose probability is below this many times chance (1 / classes) is near chance:
# the strip's label and predict's table say so.
NEAR_CHANCE = 2.0


# A window (or video) with a face in fewer of its frames than this is not a face's expression,
# whatever its probabilities: predict marks it (a note, a warning), the timeline hatches it.
MIN_FACE_SHARE = 0.5


def faceless(record: dict) -> bool:
    """MTCNN found a face in fewer than :data:`MIN_FACE_SHARE` of the window's frames (no face,
    or a false detection on a cartoon): the model saw no face."""
    faces = record.get("faces_detected")
    return faces is not None and faces < MIN_FACE_SHARE


def near_chance(record: dict) -> bool:
    probs = record["probabilities"]
    return probs[record["top_class"]] < NEAR_CHANCE / len(probs)


def class_colors(class_names: list[str]) -> list[tuple]:
    """One fixed RGB colour (0-1) per class, in class order: tab10, or tab20 past 10 classes."""
    from matplotlib import colormaps  # lazy: matplotlib only for --plot (predict without it imports none)

    cmap = colormaps["tab10" if len(class_names) <= 10 else "tab20"]
    return [tuple(float(c) for c in cmap(i)[:3]) for i in range(len(class_names))]


def segment_edges(records: list[dict]) -> np.ndarray:
    """K+1 time edges for K windows: midpoints between window centres, the first window's
    start and the last one's end outside."""
    centres = np.array([(r["window_start"] + r["window_end"]) / 2 for r in records])
    inner = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[records[0]["window_start"]], inner, [records[-1]["window_end"]]])


def top_class_runs(records: list[dict], edges: np.ndarray) -> list[tuple[str, float, float, bool]]:
    """(class, start, end, near chance) of each run of consecutive windows with the same top
    class, and equally near chance or not."""
    runs = []
    for k, rec in enumerate(records):
        unsure = near_chance(rec)
        if runs and runs[-1][0] == rec["top_class"] and runs[-1][3] == unsure:
            runs[-1] = (rec["top_class"], runs[-1][1], edges[k + 1], unsure)
        else:
            runs.append((rec["top_class"], edges[k], edges[k + 1], unsure))
    return runs


def plot_timeline(records: list[dict], class_names: list[str], path: str | Path, title: str) -> Path:
    """Write the PNG (``records`` as ``predict`` writes them, in time order)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: as class_colors
    from matplotlib.figure import Figure  # lazy: as class_colors
    from matplotlib.patches import Patch  # lazy: as class_colors

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
    runs = top_class_runs(records, edges)
    for name, start, end, unsure in runs:
        strip.axvspan(start, end, color=colors[class_names.index(name)], linewidth=0)
        if end - start > 0.06 * total:
            strip.text((start + end) / 2, 0.5, name + (" ?" if unsure else ""), ha="center", va="center", fontsize=9,
                       color="white", fontweight="bold")
    lost = [k for k, r in enumerate(records) if faceless(r)]
    for k in lost:
        for axis in (strip, ax):
            axis.axvspan(edges[k], edges[k + 1], facecolor="none", edgecolor="0.15", hatch=NO_FACE_HATCH, linewidth=0)
    for axis in (strip, ax):
        axis.set_xlim(edges[0], edges[-1])
    strip.set_ylim(0, 1)
    strip.set_yticks([])
    strip.set_ylabel("top", rotation=0, ha="right", va="center")
    strip.tick_params(labelbottom=False)
    strip.set_title(title + (f"  ('?': the top class's p < {NEAR_CHANCE:g} x chance, 1/{len(class_names)}: "
                             "near chance)" if any(r[3] for r in runs) else ""), fontsize=10)
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
