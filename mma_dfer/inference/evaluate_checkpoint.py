"""``launch/evaluate.py``: evaluate this project's checkpoints or the authors' released ones on a
fold and write the same ``result.json`` as training (so the aggregator can put them side by side).

A run's checkpoint is evaluated with its own config (``config.yaml``) unless ``--config`` or
``--set`` say otherwise, in its own precision unless ``--precision`` does. A config that would
build another model than the checkpoint's (a model field, or the input geometry) is an error
naming the fields. The result's run identity is the checkpoint's with the evaluation's data
fields, clips and precision; where those differ from the run's (another fold, other data
settings) they are named in a warning, the fingerprint differs, and ``checkpoint_fingerprint``
says which run the weights came from. Re-evaluating a run as it was reproduces its result.json,
fingerprint included.
"""
from __future__ import annotations

import argparse
import copy
import logging
import sys
from pathlib import Path

from mma_dfer.config import ConfigError, add_set_flag, load_config
from mma_dfer.data.annotations import AnnotationError, read_split
from mma_dfer.inference.records import probability_record
from mma_dfer.precision import PRECISION_CHOICES, is_float16, precision_for
from mma_dfer.runs import checkpoints, preflight
from mma_dfer.runs.identity import SHAPE_FIELDS, IdentityError, differences, file_sha256, fingerprint, run_identity
from mma_dfer.safe_files import CheckpointError
from mma_dfer.utils import atomic_write_json

DEFAULT_ROOT = "runs-eval"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="experiment YAML: which dataset, fold and data.root (default for a run's "
                   "checkpoint: the run's own config.yaml; needed for an authors' file)")
    p.add_argument("--checkpoint", required=True,
                   help="a run folder / checkpoint tag folder of this project, or an authors' model.pth")
    p.add_argument("--clips", type=int, choices=(1, 2), default=2, help="1: 1-clip only; 2: 1-clip and 2-clip")
    p.add_argument("--precision", choices=PRECISION_CHOICES, default=None,
                   help="default: the run's own (result.json's precision; fp32 for an authors' file)")
    p.add_argument("--output", help=f"folder for result.json (default {DEFAULT_ROOT}/<dataset>/res<R>/fold<k>; "
                   "another checkpoint's result there is never overwritten)")
    p.add_argument("--batch-size", type=int, default=None, help="clips per forward pass (default: eval.batch_size)")
    p.add_argument("--predictions", help="also write every test clip's class probabilities to this JSON file")
    add_set_flag(p)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evaluate", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return p


def evaluation_identity(loaded, cfg, precision: str, clips: list[int], test: list, checkpoint: Path):
    """(identity, fingerprint) of this evaluation. For a run's checkpoint (whose model ``cfg``
    builds: :func:`~mma_dfer.inference.restore.check_model_fields`): the run's identity with the evaluation's data fields,
    clips and precision; the fields where the evaluation differs from the run are logged."""
    cfg = copy.deepcopy(cfg)
    cfg.eval.clips = tuple(clips)
    # no DeepSpeed JSON: the precision is the evaluation's own, the training list the checkpoint's
    now = {**run_identity(cfg, {}, [], test), "deepspeed.precision": precision}
    if loaded.identity is None:
        identity = {**now, "checkpoint.sha256": file_sha256(str(checkpoint)) if loaded.kind == "authors" else None}
        return identity, fingerprint(identity)
    own = [k for k in now if k.startswith("data.") and k not in (*SHAPE_FIELDS, "data.split_train")]
    own += ["eval.clips", "deepspeed.precision"]
    for line in differences({k: loaded.identity.get(k) for k in own}, {k: now[k] for k in own}):
        logging.warning("evaluating otherwise than the run was: %s", line)
    identity = {**loaded.identity, **{k: now[k] for k in own}}
    return identity, fingerprint(identity)


def prediction_records(samples, evals: dict, class_names: list[str]) -> list[dict]:
    """Per test clip and clip count, its class probabilities (``--predictions``): the same
    record as ``predict`` writes for a video, plus the clip's id, label and clip count."""
    out = []
    for clips, ev in sorted(evals.items()):
        for i, probs in zip(ev["indices"], ev["probs"]):
            s = samples[int(i)]
            out.append({"clip_id": s.clip_id, "label": class_names[s.label], "clips": clips,
                        **probability_record(str(s.video), None, None, class_names, probs)})
    return out


def config_for(args):
    """The evaluation's config: ``--config``, else the run's own ``config.yaml`` (with ``--set``)."""
    if args.config:
        return load_config(args.config, args.overrides)
    path = Path(args.checkpoint)
    if path.is_file():
        raise ConfigError(f"{path}: an authors' checkpoint needs --config (data.dataset, data.fold, data.root)")
    try:
        run_dir = checkpoints.resolve(path).parent.parent
    except FileNotFoundError:
        return None  # load_model names the problem
    return load_config(run_dir / "config.yaml", args.overrides)


def run(args) -> int:
    # what needs only the config and the file system, before torch is imported
    try:
        cfg = config_for(args)
        preflight.check_evaluation(cfg, args.checkpoint)
        if cfg is not None:
            preflight.check_evaluation_output(preflight.evaluation_output(args.output, cfg.data, DEFAULT_ROOT),
                                              args.checkpoint, bool(args.output))
    except (ConfigError, AnnotationError, preflight.PreflightError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return evaluate_and_write(args)


def evaluate_and_write(args) -> int:
    """Load, evaluate and write result.json (torch from here on: :func:`run` checked the rest)."""
    import torch  # lazy: evaluate --help and run()'s checks import no torch

    from mma_dfer.data.dataset import ClipDataset  # lazy: as torch above
    from mma_dfer.data.video import ClipError  # lazy: as torch above
    from mma_dfer.inference.evaluate import evaluate  # lazy: as torch above
    from mma_dfer.inference.precision import apply_precision  # lazy: as torch above
    from mma_dfer.inference.restore import load_model  # lazy: as torch above
    from mma_dfer.runs.results import make_result  # lazy: as torch above

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        loaded = load_model(Path(args.checkpoint), config_for(args))
        cfg = loaded.cfg
        out = preflight.evaluation_output(args.output, cfg.data, DEFAULT_ROOT)  # an authors' file sets the size
        preflight.check_evaluation_output(out, args.checkpoint, bool(args.output))
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        precision = precision_for(args.precision, loaded.precision)
        if is_float16(precision) and device.type == "cpu":
            raise ConfigError("evaluation in float16 needs a GPU: pass --precision fp32 or bf16 on the CPU")
        test = read_split(cfg.data, "test")
        clips = list(range(1, args.clips + 1))
        identity, stamp = evaluation_identity(loaded, cfg, precision, clips, test, Path(args.checkpoint))
        model = loaded.model
        dtype = apply_precision(model, precision)
        model.to(device)
        batch = args.batch_size or cfg.eval.batch_size
        evals = {}
        for c in clips:
            ds = ClipDataset(test, cfg.data, train=False, clips=c, seed=cfg.train.seed)
            evals[c] = evaluate(model, ds, batch, cfg.data.num_workers, device, cfg.model.num_classes, dtype,
                                progress=sys.stderr.isatty())
    except (ConfigError, CheckpointError, AnnotationError, ClipError, IdentityError, preflight.PreflightError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    trained = loaded.identity and fingerprint(loaded.identity)
    result = make_result(cfg, evals, loaded.epoch, checkpoint=str(args.checkpoint), checkpoint_kind=loaded.kind,
                         checkpoint_fingerprint=trained, precision=precision, config_fingerprint=stamp,
                         run_identity=identity)
    atomic_write_json(out / "result.json", result)
    if args.predictions:
        atomic_write_json(args.predictions, prediction_records(test, evals, result["class_names"]))
    two = f"; 2-clip UAR {result['uar_2clip']:.2f} WAR {result['war_2clip']:.2f}" if result["uar_2clip"] is not None else ""
    print(f"{cfg.data.dataset} fold {cfg.data.fold} res {cfg.data.resolution}: UAR {result['uar']:.2f} "
          f"WAR {result['war']:.2f}{two} ({result['num_test_clips']} clips, {precision}, "
          f"run fingerprint {stamp}); "
          f"wrote {out / 'result.json'}")
    return 0


def main(argv=None) -> int:
    return run(parser().parse_args(argv))
