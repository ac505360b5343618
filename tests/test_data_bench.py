"""The data benchmarks run and keep their tables: bench/data_pipeline.py (with the packed rows)
and bench/data_scale.py (every storage of a sample, extrapolated), at toy sizes."""
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def run(tmp_path, script, *args):
    out = tmp_path / "table.md"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args, "--markdown", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return out.read_text()


def test_data_pipeline_keeps_its_table_and_adds_the_packed_rows(tmp_path):
    text = run(tmp_path, "data_pipeline.py", "--resolutions", "112", "--clips", "4")
    rows = re.findall(r"^\| 112 \| (.+?) \| (\d+\.\d) \|$", text, re.M)
    assert [name for name, _ in rows] == [
        "mp4 decode + CPU aug", "JPEG frames + CPU aug", "cache + CPU aug", "cache + CPU batched aug",
        "packed + CPU aug", "packed + CPU batched aug", "packed + CPU batched decode + aug"]
    assert text.startswith("machine: ") and "| res | path | clips/s (1 core) |" in text
    assert all(float(rate) > 0 for _, rate in rows)


def test_data_scale_measures_every_storage_and_extrapolates(tmp_path):
    text = run(tmp_path, "data_scale.py", "--datasets", "dfew", "--clips", "3", "--mtcnn-frames", "2")
    rows = {r[1]: r for r in (line.split(" | ") for line in text.splitlines() if line.startswith("| DFEW"))}
    assert list(rows) == ["JPEG folders (q95) + wav", "cache (uint8 224 px) + fbank",
                          "packed, JPEG files as shipped (q95)", "packed, encoded from video (q90)"]
    cache, packed = rows["cache (uint8 224 px) + fbank"], rows["packed, JPEG files as shipped (q95)"]
    assert float(cache[2].replace(",", "")) > 150528  # a raw 224-px frame and its fbank share
    assert float(packed[2].replace(",", "")) < 0.2 * float(cache[2].replace(",", ""))
    assert float(cache[5]) > 130  # DFEW's 901,703 frames at ~152 KB: ~137 GB
    assert cache[3] == "3" and float(packed[3]) < 0.01  # files a clip: 3, against 1 GiB shards of many clips
    if "not counted" not in packed[4]:
        assert float(packed[4]) <= 1 and float(rows["JPEG folders (q95) + wav"][4]) >= 16  # opens a clip read
    mtcnn = re.findall(r"^\| (\d+x\d+) \| [\d.]+ \| [\d.]+ \| 2/2 \|", text, re.M)
    assert mtcnn == ["176x144", "640x360", "1280x720"]
