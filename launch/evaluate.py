"""Evaluate a checkpoint on a fold's test set and write result.json.

    python launch/evaluate.py --config configs/dfew_160.yaml --checkpoint runs/dfew/res160/fold1 [--clips 1|2] [--output DIR]
    python launch/evaluate.py --config configs/dfew_224.yaml --checkpoint DFEW_set_1_model.pth   # authors' release
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mma_dfer.inference.evaluate_checkpoint import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
