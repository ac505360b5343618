"""Train one fold at one resolution.

    deepspeed launch/train.py --config configs/dfew_160.yaml --deepspeed_config ds_configs/zero2_fp16.json \
        [--set key=value ...] [--resume auto|never|PATH]

Also runs under torchrun / srun, or as plain ``python launch/train.py`` (one process).
Exit codes: 0 done; 2 bad config or input; 75 stopped by SIGUSR1/SIGTERM after writing a
checkpoint (requeue and rerun to resume); 76 a collective failed or timed out because another
rank or its node was lost (requeue to resume from the last checkpoint); 1 anything else.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mma_dfer.training.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
