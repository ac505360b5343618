"""Repository contracts: the README's test command is what CI runs; every config parses."""
import re

import pytest

from mma_dfer.config import load_config
from tests.conftest import ROOT


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci/run").read_text()
    cmd = re.search(r'^TEST_CMD="(.*)"$', ci, re.M).group(1)
    blocks = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    assert blocks[1] == cmd


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    load_config(path)


@pytest.mark.slow
def test_quick_step_benchmark_ends_with_the_ratio_line():
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(ROOT / "bench/train_step.py"), "--quick"], cwd=ROOT,
                          env={**os.environ, "DS_ACCELERATOR": "cpu"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"deepspeed/plain throughput ratio: \d+\.\d+", last), last
    assert "4 frames per clip (not 16)" in proc.stdout


@pytest.mark.slow
def test_memory_benchmark_tables(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "memory.md"
    proc = subprocess.run([sys.executable, str(ROOT / "bench/memory.py"), "--resolutions", "112", "--zero-res", "112",
                           "--frames", "1", "--markdown", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert text.count("| 112 | fp32 |") == 3 and text.count("| 112 | bf16 |") == 2
    assert "ZeRO-3 vs ZeRO-0 on 8 GPU(s): saves" in text
    # with 8 GPUs (micro-batch 1) ZeRO-3 partitions the frozen weights: the smallest model states
    states = [float(line.split("|")[7]) for line in text.splitlines() if line.startswith("| 8 | 1 |")]
    assert len(states) == 8 and states[3] == min(states[:4]) < states[0]
