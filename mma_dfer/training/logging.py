"""Rank-0 run logging: TensorBoard scalars/images/hparams and an append-only ``log.jsonl``.

Everything goes into the run's own event file, so TensorBoard lists one run per run folder
(``SummaryWriter.add_hparams`` would add a second run named after it)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from mma_dfer.figures import confusion_figure, rgb


class RunLogger:
    """A no-op on every rank but 0."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.enabled = enabled
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # lazy: only rank 0 writes; the others never load it

            self.writer = SummaryWriter(log_dir=str(run_dir / "tb"))
            self.jsonl = open(run_dir / "log.jsonl", "a")

    def scalars(self, step: int, values: dict, prefix: str = "", epoch: Optional[int] = None) -> None:
        """TensorBoard scalars and one ``log.jsonl`` line (with ``epoch`` there when given)."""
        if not self.enabled:
            return
        for k, v in values.items():
            if v is not None:
                self.writer.add_scalar(f"{prefix}{k}", v, step)
        line = {"step": step, **({"epoch": epoch} if epoch is not None else {}),
                **{f"{prefix}{k}": v for k, v in values.items()}}
        self.jsonl.write(json.dumps(line) + "\n")
        self.jsonl.flush()

    def confusion(self, step: int, cm, class_names, title: str = "", tag: str = "test/confusion") -> None:
        """The confusion matrix as a labelled figure (class names, counts, per-class recall)."""
        if self.enabled:
            self.writer.add_image(tag, rgb(confusion_figure(cm, class_names, title)), step, dataformats="HWC")

    def text(self, tag: str, text: str) -> None:
        if self.enabled:
            self.writer.add_text(tag, f"```\n{text}\n```")

    def hparams(self, hparams: dict, metric_tags: list) -> None:
        """The HPARAMS dashboard's session, in this run: the config values and the scalar tags
        (already logged here, e.g. ``test/uar``) that the dashboard shows beside them."""
        if self.enabled:
            from torch.utils.tensorboard.summary import hparams as hparams_summaries  # lazy: as SummaryWriter

            for summary in hparams_summaries(hparams, {tag: 0.0 for tag in metric_tags}):
                self.writer.file_writer.add_summary(summary)

    def close(self) -> None:
        if self.enabled:
            self.writer.close()
            self.jsonl.close()

