"""Per-resolution UAR/WAR tables over folds, beside the paper's numbers.

    python launch/aggregate.py RUNS_ROOT [--json FILE] [--csv FILE] [--folds 1-5] [--resolutions 112,160,224] [--plot DIR]

Exit code 0: every expected fold present; 3: some missing (the table is still written);
2: an error (a duplicate or corrupt result.json, named).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mma_dfer.experiments.aggregate import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
