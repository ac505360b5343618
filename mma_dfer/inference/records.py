"""A prediction as the outputs write it: one record per video or window (``predict --json``,
``--stream``'s lines, ``evaluate --predictions``) and the ``--csv`` table of them. No torch."""
from __future__ import annotations

import csv
import io
from typing import Optional

import numpy as np

from mma_dfer.utils import atomic_write_text


def probability_record(file: str, start: Optional[float], end: Optional[float], class_names: list[str],
                       probs) -> dict:
    """One prediction as ``--json`` writes it (``--predictions`` of evaluation too)."""
    probs = [float(p) for p in probs]
    return {"file": file, "window_start": start, "window_end": end,
            "top_class": class_names[int(np.argmax(probs))], "probabilities": dict(zip(class_names, probs))}


def write_csv(path: str, records: list[dict], class_names: list[str]) -> None:
    """``--csv``: a row per record, a column per class, then faces, silence and precision."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["file", "window_start", "window_end", "top_class", *class_names, "faces_detected", "silent_audio",
                "precision"])
    for rec in records:
        w.writerow([rec["file"], rec["window_start"], rec["window_end"], rec["top_class"],
                    *(f"{rec['probabilities'][c]:.8g}" for c in class_names),
                    "" if rec["faces_detected"] is None else f"{rec['faces_detected']:.4g}", int(rec["silent_audio"]),
                    rec["precision"]])
    atomic_write_text(path, buf.getvalue())
