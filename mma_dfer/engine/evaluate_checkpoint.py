"""``launch/evaluate.py``: evaluate this project's checkpoints or the authors' released ones on a
fold and write the same ``result.json`` as training (so the aggregator can put them side by side)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

DEFAULT_ROOT = "runs-eval"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True, help="experiment YAML: which dataset, fold and data.root")
    p.add_argument("--checkpoint", required=True,
                   help="a run folder / checkpoint tag folder of this project, or an authors' model.pth")
    p.add_argument("--clips", type=int, choices=(1, 2), default=2, help="1: 1-clip only; 2: 1-clip and 2-clip")
    p.add_argument("--output", help=f"folder for result.json (default {DEFAULT_ROOT}/<dataset>/res<R>/fold<k>)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--predictions", help="also write every test clip's class probabilities to this JSON file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return p


def load_model(path: Path, cfg=None):
    """(model, config, epoch, kind) for either kind of checkpoint. Without ``cfg``: a run's own
    ``config.yaml``, or for an authors' file its dataset's defaults (the dataset read off its
    class count). The config is adapted to an authors' model (its resolution and frame counts
    come from the checkpoint; its MAFW classes are mapped to this project's order)."""
    from mma_dfer.config import ConfigError, load_config
    from mma_dfer.engine import checkpointing
    from mma_dfer.engine.restore import load_trained_model
    from mma_dfer.models import from_authors_checkpoint

    if path.is_file():
        model = from_authors_checkpoint(path, label_order="canonical")
        if cfg is None:
            dataset = {7: "dfew", 11: "mafw"}.get(model.num_classes)
            if dataset is None:
                raise ConfigError(f"{path} has {model.num_classes} classes: neither DFEW (7) nor MAFW (11)")
            cfg = load_config(None, [f"data.dataset={dataset}", f"data.resolution={model.image_size}"])
        if model.num_classes != cfg.model.num_classes:
            raise ConfigError(f"{path} has {model.num_classes} classes but data.dataset={cfg.data.dataset} has "
                              f"{cfg.model.num_classes}")
        if cfg.data.resolution != model.image_size:
            logging.warning("using the checkpoint's resolution %d (config: %d)", model.image_size, cfg.data.resolution)
        cfg.data.resolution, cfg.data.num_frames = model.image_size, model.num_frames
        cfg.data.audio_frames = model.audio_frames
        return model, cfg, model.checkpoint_epoch, "authors"
    model, cfg = load_trained_model(path, cfg)
    return model, cfg, checkpointing.marker(checkpointing.resolve(path))["epoch"], "mma-dfer"


def prediction_records(samples, evals: dict, class_names: list[str]) -> list[dict]:
    """Per test clip and clip count, its class probabilities (``--predictions``): the same
    record as ``predict`` writes for a video, plus the clip's id, label and clip count."""
    from mma_dfer.engine.predict import probability_record

    out = []
    for clips, ev in sorted(evals.items()):
        for i, probs in zip(ev["indices"], ev["probs"]):
            s = samples[int(i)]
            out.append({"clip_id": s.clip_id, "label": class_names[s.label], "clips": clips,
                        **probability_record(str(s.video), None, None, class_names, probs)})
    return out


def main(argv=None) -> int:
    import torch

    from mma_dfer.config import ConfigError, load_config
    from mma_dfer.data.annotations import AnnotationError, read_split
    from mma_dfer.data.dataset import ClipDataset
    from mma_dfer.data.video import ClipError
    from mma_dfer.engine.evaluate import evaluate
    from mma_dfer.engine.results import make_result
    from mma_dfer.models.checkpoints import CheckpointError
    from mma_dfer.utils import atomic_write_json

    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
        model, cfg, epoch, kind = load_model(Path(args.checkpoint), cfg)
        samples = read_split(cfg.data, "test")
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model.to(device)
        batch = args.batch_size or cfg.eval.batch_size
        evals = {}
        for clips in range(1, args.clips + 1):
            ds = ClipDataset(samples, cfg.data, train=False, clips=clips, seed=cfg.train.seed)
            evals[clips] = evaluate(model, ds, batch, cfg.data.num_workers, device, cfg.model.num_classes,
                                    progress=sys.stderr.isatty())
    except (ConfigError, CheckpointError, AnnotationError, ClipError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.output) if args.output else (Path(DEFAULT_ROOT) / cfg.data.dataset /
                                                  f"res{cfg.data.resolution}" / f"fold{cfg.data.fold}")
    result = make_result(cfg, evals, epoch, checkpoint=str(args.checkpoint), checkpoint_kind=kind)
    atomic_write_json(out / "result.json", result)
    if args.predictions:
        atomic_write_json(args.predictions, prediction_records(samples, evals, result["class_names"]))
    two = f"; 2-clip UAR {result['uar_2clip']:.2f} WAR {result['war_2clip']:.2f}" if result["uar_2clip"] is not None else ""
    print(f"{cfg.data.dataset} fold {cfg.data.fold} res {cfg.data.resolution}: UAR {result['uar']:.2f} "
          f"WAR {result['war']:.2f}{two} ({result['num_test_clips']} clips); wrote {out / 'result.json'}")
    return 0
