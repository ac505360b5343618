"""Fan out the folds x resolutions, or a sweep's runs, through submitit.

    python launch/submit.py --dataset dfew --folds 1-5 --resolutions 112,160,224 \
        [--nodes N --gpus-per-node G --partition P --account A --time MIN] [--cluster slurm|local|debug]
    python launch/submit.py --sweep configs/sweeps/table4.yaml [--variants a,b] [--folds ..] [--set data.root=..] ...
    python launch/submit.py --status [--runs-root runs]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mma_dfer.cluster.submit import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
