"""One self-contained HTML report of every run under a runs root, beside the paper's tables.

    python launch/report.py RUNS_ROOT [--out FILE]      (default FILE: RUNS_ROOT/report.html)

Exit code 0: the report was written (missing and failed runs are listed inside and printed);
2: an error (no such root, a corrupt or duplicate result.json, a bad sweep definition; named).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mma_dfer.report import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
