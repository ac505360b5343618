"""The settings of ``prepare`` and its command line, importable without torch (``mma-dfer
prepare --help`` is built from them; :mod:`mma_dfer.data.prepare` does the work)."""
from __future__ import annotations

from mma_dfer.data.annotations import LAYOUTS

SAMPLE_RATE = 16000
JPEG_QUALITY = 95  # face crops' frame files
FACE_SIZE, FACE_MARGIN, FACE_SMOOTH = 224, 1.3, 5  # crop side (px), square = margin x box, smoothing (frames)
DETECT_BATCH = 16  # frames per MTCNN call on the CPU
DETECT_BATCH_CUDA = 128  # on a GPU: one call for most clips (the P-Net pyramid runs on the whole batch)
PACK_QUALITY = 90  # JPEG quality of frames the packed store encodes (10.8 KB a 224-px face frame)
# How to get MTCNN: facenet-pytorch without its dependencies (its metadata pins torch<2.3, which
# would replace this torch); what it imports (requests among them) comes with mma-dfer itself.
MTCNN_HINT = "pip install --no-deps facenet-pytorch==2.6.0"


def add_arguments(p) -> None:
    p.add_argument("--dataset", choices=sorted(LAYOUTS), required=True, help="which layout --raw has")
    p.add_argument("--raw", required=True, help="the dataset as downloaded (its fold files, if it has any, and clips)")
    p.add_argument("--out", required=True, help="output folder (a complete data.root); may equal --raw")
    p.add_argument("--workers", type=int, default=1, help="processes preparing clips")
    p.add_argument("--faces", choices=("mtcnn", "none"), default="none",
                   help="MTCNN face crops (the paper's setting for MAFW, and for CREMA-D and RAVDESS; DFEW ships "
                        "aligned faces) or none")
    p.add_argument("--margin", type=float, default=FACE_MARGIN, help="square side = margin x the larger box side")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help=f"where MTCNN runs (cuda: batches of {DETECT_BATCH_CUDA} frames)")
    p.add_argument("--resolution-cache", default="",
                   help="also fill the pre-decoding cache (224-px frames serve 112,160,224)")
    p.add_argument("--pack", action="store_true", help="also write the packed store <out>/packed (data.source=packed)")
    p.add_argument("--pack-quality", type=int, default=PACK_QUALITY,
                   help="JPEG quality of the frames the store encodes (video frames, non-JPEG frame files)")
    p.add_argument("--pack-shard-mb", type=float, default=1024, help="size of the store's shard files (MiB)")
    p.add_argument("--sample-rate", type=int, default=16000, help="the store's fbank sample rate (data.sample_rate)")
    p.add_argument("--mel-bins", type=int, default=128, help="the store's fbank mel bins (data.mel_bins)")
    p.add_argument("--shard", metavar="I/N", help="prepare only piece I of N of the clips (a SLURM array task)")
    p.add_argument("--merge", type=int, metavar="N", help="join the N --shard pieces' summaries and stores")
    p.add_argument("--force", action="store_true", help="redo finished clips and overwrite outputs")
