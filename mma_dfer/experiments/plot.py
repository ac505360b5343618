"""The fold table as one bar chart (PNG) per dataset (``aggregate --plot``), drawn with Pillow."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from mma_dfer.experiments.formats import title
from mma_dfer.experiments.verdicts import refused


COLOURS = {"uar": ((66, 133, 244), (179, 204, 250)), "war": ((52, 168, 83), (174, 220, 186))}  # full, pale
LEFT, TOP, BOTTOM, GROUP, BAR, HEIGHT = 40, 44, 44, 140, 40, 380  # margins, a row's width, a bar's, pixels


def plot(table: dict, folder: str | Path) -> list[Path]:
    """One PNG per dataset: UAR and WAR means per resolution (bars, with ±std whiskers) and the
    paper's numbers (black ticks); a row with folds missing in a paler shade of its colour (and
    "incomplete" under it), a row the aggregator refuses to average without a bar. Drawn with
    Pillow; the axis runs to 110 so that a whisker above 100 is drawn whole; returns the files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for dataset, rows in table.items():
        path = folder / f"{dataset}.png"
        _chart(dataset, rows).save(path)
        written.append(path)
    return written


def _chart(dataset: str, rows: dict) -> Image.Image:
    """One dataset's chart: the grid, a group of two bars per resolution, the heading."""
    heading = f"{title(dataset)}: UAR (blue) / WAR (green), mean ± std over folds; paper: black"
    text_width = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(heading)
    w, h = max(LEFT + 20 + GROUP * len(rows), LEFT + int(text_width) + 20), HEIGHT
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    y = lambda v: h - BOTTOM - (h - BOTTOM - TOP) * min(max(v, 0.0), 110.0) / 110.0  # noqa: E731
    for tick in range(0, 101, 20):
        d.line([(LEFT, y(tick)), (w - 10, y(tick))], fill=(225, 225, 225))
        d.text((8, y(tick) - 6), str(tick), fill="black")
    for i, (res, row) in enumerate(rows.items()):
        _group(d, y, LEFT + 20 + GROUP * i, res, row)
    d.text((LEFT, 6), heading, fill="black")
    d.text((LEFT, 22), "pale: folds missing (incomplete)", fill=(90, 90, 90))
    return img


def _group(d: ImageDraw.ImageDraw, y, x0: int, res: str, row: dict) -> None:
    """One row's UAR and WAR bars from ``x0``, whiskers, the paper's ticks and the label under them
    (``y``: a value's height in the picture)."""
    for j, metric in enumerate(("uar", "war")):
        mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
        bx = x0 + j * (BAR + 8)
        if mean is not None:
            d.rectangle([bx, y(mean), bx + BAR, y(0)], fill=COLOURS[metric][0 if row["complete"] else 1])
            if std is not None:
                d.line([(bx + BAR / 2, y(mean - std)), (bx + BAR / 2, y(mean + std))], fill="black", width=2)
        if row["paper"]:
            d.line([(bx - 3, y(row["paper"][metric])), (bx + BAR + 3, y(row["paper"][metric]))], fill="black",
                   width=3)
    bottom = HEIGHT - BOTTOM
    d.text((x0, bottom + 8), f"{res} px" + ("" if row["complete"] else " (incomplete)"), fill="black")
    if refused(row):
        d.text((x0, bottom + 22), "not averaged", fill=(180, 35, 24))
