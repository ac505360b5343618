"""The trained model in use: export (ONNX, torch.export) equal to the eager model, the sidecar,
predict on ONNX Runtime and int8, and live streams from a local FFmpeg (PyAV) source."""
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from mma_dfer.cli import main
from mma_dfer.labels import CLASS_NAMES
from tests.conftest import ROOT, run_train

DEMO = str(ROOT / "configs/demo.yaml")
DFEW = CLASS_NAMES["dfew"]
SOURCE = str(ROOT / "tests/stream_source.py")


@pytest.fixture(scope="module")
def run_dir(demo_root, tmp_path_factory):
    """The demo's training run (its 6 epochs: a model whose top classes are clear enough for the
    int8 agreement to mean something; after 3, half the clips' top two are within 0.01)."""
    out = tmp_path_factory.mktemp("deploy") / "run"
    run_train("--config", DEMO, "--set", f"data.root={demo_root}", "--set", f"output_dir={out}")
    return out


def fold1_test_clips(root):
    from mma_dfer.data.annotations import read_split
    from tests.conftest import data_cfg

    return [str(s.video) for s in read_split(data_cfg(root, "dfew"), "test")]


def random_model(*overrides):
    from mma_dfer.config import load_config
    from mma_dfer.models import build_model

    torch.manual_seed(0)
    cfg = load_config(None, list(overrides))
    return build_model(cfg, load_pretrained=False).eval(), cfg


def exported_forward(fmt, data):
    from mma_dfer.inference.export import onnx_session, session_forward

    if fmt == "onnx":
        return session_forward(onnx_session(data))
    return torch.export.load(io.BytesIO(data)).module()


def assert_equal_to_eager(model, cfg, fmt, data, batches=(1, 3)):
    """The exported file, loaded on its own, gives the eager logits within 1e-4 (fresh inputs)."""
    from mma_dfer.inference.export import example_inputs

    run = exported_forward(fmt, data)
    with torch.no_grad():
        for b in batches:
            video, audio = example_inputs(cfg, b, seed=100 + b)
            eager, got = model(video, audio), run(video, audio)
            assert got.shape == (b, cfg.model.num_classes)
            assert (got - eager).abs().max() <= 1e-4, (fmt, b, float((got - eager).abs().max()))


@pytest.mark.parametrize("resolution", [112, 160, 224])
def test_the_tiny_model_exports_equal_to_eager(resolution):
    """Both formats from one trace, loaded on their own: batch 1 and 3, and 5 (the batch is dynamic)."""
    from mma_dfer.inference.export import onnx_bytes, pt2_bytes, trace

    model, cfg = random_model(*tiny_overrides(resolution))
    program = trace(model, cfg)
    for fmt, data in (("pt2", pt2_bytes(program)), ("onnx", onnx_bytes(program))):
        assert_equal_to_eager(model, cfg, fmt, data, batches=(1, 3, 5))


def tiny_overrides(resolution):
    import yaml

    tiny = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
    return [f"{section}.{k}={v}" for section, fields in tiny.items() for k, v in fields.items()
            if k != "resolution"] + [f"data.resolution={resolution}"]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # 224 px: 8 full forward passes on 2 cores, and the ONNX export
@pytest.mark.parametrize("resolution", [112, 160, 224])
def test_the_full_vit_b_model_exports_equal_to_eager(resolution):
    """The paper's geometry (ViT-B/16 x 2, 16 frames, 512 fbank frames): one trace, both formats."""
    from mma_dfer.inference.export import onnx_bytes, pt2_bytes, trace

    model, cfg = random_model(f"data.resolution={resolution}")
    assert cfg.model.embed_dim == 768 and cfg.model.depth == 12 and cfg.data.num_frames == 16
    program = trace(model, cfg)
    for fmt, data in (("pt2", pt2_bytes(program)), ("onnx", onnx_bytes(program))):
        assert_equal_to_eager(model, cfg, fmt, data)


def test_export_writes_the_model_and_its_sidecar(run_dir, demo_root, tmp_path, capsys):
    import onnxruntime as ort

    from mma_dfer.data import audio as A
    from mma_dfer.inference.restore import load_model
    from mma_dfer.runs.identity import fingerprint

    out = tmp_path / "m.onnx"
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(out)]) == 0
    assert f"wrote {out} and {out}.json" in capsys.readouterr().out
    side = json.loads((tmp_path / "m.onnx.json").read_text())
    loaded = load_model(run_dir)
    assert side["class_names"] == DFEW and side["format"] == "onnx" and side["file"] == "m.onnx"
    assert side["model"]["fingerprint"] == fingerprint(loaded.identity)
    assert side["model"]["trained_precision"] == "float32" and side["model"]["resolution"] == 32
    assert side["inputs"]["video"]["shape"] == ["batch", 8, 3, 32, 32]
    assert side["inputs"]["video"]["value_range"] == [0.0, 1.0]
    assert side["inputs"]["audio"]["shape"] == ["batch", 1, 128, 128]
    assert side["inputs"]["audio"]["mean"] == A.AUDIOSET_MEAN and side["inputs"]["audio"]["std"] == A.AUDIOSET_STD
    assert side["inputs"]["audio"]["fbank"]["sample_rate"] == 16000
    assert side["checked"]["largest_logit_difference"] <= 1e-4 and side["dynamic_batch"] is True
    assert {"torch", "onnx", "onnxruntime", "onnxscript"} <= side["versions"].keys()

    # a consumer with only ONNX Runtime: its inputs and the sidecar's say the same; predict's inputs
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["video", "audio"]
    assert session.get_inputs()[0].shape[1:] == side["inputs"]["video"]["shape"][1:]
    from mma_dfer.data.dataset import evaluation_inputs, read_fbank
    from mma_dfer.data import video as V
    from pathlib import Path

    clip = Path(fold1_test_clips(demo_root)[0])
    vr = V.open_video(clip)
    video, audio = evaluation_inputs(len(vr), lambda idx: V.read_video_frames(vr, clip, idx),
                                     read_fbank(clip, loaded.cfg.data), loaded.cfg.data)
    logits = session.run(None, {"video": video[None].numpy(), "audio": audio[None].numpy()})[0]
    with torch.no_grad():
        eager = loaded.model.eval()(video[None], audio[None]).numpy()
    assert np.abs(logits - eager).max() <= 1e-4

    # pt2, at its default place; the model's own resolution is accepted, another is an error saying why
    assert main(["export", str(run_dir), "--format", "pt2", "--resolution", "32"]) == 0
    assert (run_dir / "export/model-32.pt2").is_file() and (run_dir / "export/model-32.pt2.json").is_file()
    program = torch.export.load(str(run_dir / "export/model-32.pt2"))
    with torch.no_grad():
        assert (program.module()(video[None].repeat(3, 1, 1, 1, 1), audio[None].repeat(3, 1, 1, 1))
                - torch.from_numpy(eager)).abs().max() <= 1e-4
    capsys.readouterr()
    assert main(["export", str(run_dir), "--format", "onnx", "--resolution", "160", "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "trained at 32 px" in err and "160-px export would be another model" in err
    assert not (tmp_path / "x.onnx").exists()


def test_an_export_that_is_not_faithful_is_an_error(run_dir, tmp_path, capsys, monkeypatch):
    """An exporter that changed the model (here: a weight perturbed on the way) is caught: exit 2,
    the difference named, nothing written."""
    from mma_dfer.inference import export as E

    real = E.onnx_bytes

    def perturbed(program):
        state = program.state_dict
        name = next(k for k in state if k.endswith("head.weight"))
        state[name].data += 0.01
        try:
            return real(program)
        finally:
            state[name].data -= 0.01

    monkeypatch.setattr(E, "onnx_bytes", perturbed)
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "the ONNX model differs from the eager model by" in err and "not written" in err
    assert not list(tmp_path.iterdir())


def test_an_authors_checkpoint_exports(tmp_path, monkeypatch, capsys):
    from tests.test_checkpoints import authors_model, authors_state, save_authors_container

    path = tmp_path / "MAFW_set_1_model.pth"
    save_authors_container(path, authors_state(authors_model("mafw")), monkeypatch)
    assert main(["export", str(path), "--format", "pt2"]) == 0
    side = json.loads((tmp_path / "MAFW_set_1_model.pt2.json").read_text())
    assert side["class_names"] == CLASS_NAMES["mafw"] and side["model"]["kind"] == "authors"
    assert side["model"]["fingerprint"] is None and len(side["model"]["source_sha256"]) == 64


def predictions(capsys, tmp_path, files, run_dir, *flags):
    name = tmp_path / f"p{len(list(tmp_path.iterdir()))}.json"
    rc = main(["predict", *files, "--checkpoint", str(run_dir), "--faces", "none", "--json", str(name), *flags])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return {r["file"]: r for r in json.loads(name.read_text())}, out


def test_predict_on_onnxruntime_and_int8(run_dir, demo_root, tmp_path, capsys):
    """ONNX Runtime gives the eager predictions; int8 (both runtimes) agrees with fp32 on >= 98%
    of the top classes of all 70 clips of the demo's dataset."""
    files = sorted(str(f) for f in (demo_root / "Clip/original").glob("*.mp4"))
    assert len(files) == 70
    eager, _ = predictions(capsys, tmp_path, files, run_dir)
    ort, out = predictions(capsys, tmp_path, files, run_dir, "--runtime", "onnxruntime")
    assert "float32, faces none, onnxruntime)" in out
    for f in files:
        assert max(abs(ort[f]["probabilities"][c] - eager[f]["probabilities"][c]) for c in DFEW) <= 1e-5
        assert ort[f]["top_class"] == eager[f]["top_class"] and ort[f]["precision"] == "float32"
    for runtime in ("torch", "onnxruntime"):
        q, _ = predictions(capsys, tmp_path, files, run_dir, "--runtime", runtime, "--quantize", "int8")
        agree = np.mean([q[f]["top_class"] == eager[f]["top_class"] for f in files])
        change = max(abs(q[f]["probabilities"][c] - eager[f]["probabilities"][c]) for f in files for c in DFEW)
        assert agree >= 0.98 and change < 0.03, (runtime, agree, change)
        assert all(r["precision"] == "int8-dynamic" for r in q.values())


def test_runtime_flags_that_cannot_work_exit_with_2(run_dir, demo_root, capsys):
    clip = fold1_test_clips(demo_root)[0]
    for flags, message in ((["--runtime", "onnxruntime", "--precision", "bf16"], "cannot be combined"),
                           (["--quantize", "int8", "--device", "cuda"], "--device cpu" if not torch.cuda.is_available()
                            else "runs on the CPU")):
        assert main(["predict", clip, "--checkpoint", str(run_dir), "--faces", "none", *flags]) == 2
        assert message in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(run_dir)]) == 2
    assert "give INPUT videos or folders, or --stream SOURCE" in capsys.readouterr().err
    assert main(["predict", clip, "--stream", "-", "--checkpoint", str(run_dir)]) == 2
    assert "give no INPUT files" in capsys.readouterr().err


# -- live streams ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip_4s(tmp_path_factory):
    """A 4-s H.264/AAC clip of one class (25 fps, 44.1 kHz stereo), as a camera would send it."""
    from mma_dfer.data.synthetic import render_audio, render_frames, write_mp4

    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("stream") / "live.mp4"
    return write_mp4(path, render_frames(3, 7, 100, 64, rng), render_audio(3, 7, 4.0, rng))


def stream_command(run_dir, source, tmp_path, *flags):
    return [sys.executable, "-m", "mma_dfer", "predict", "--stream", source, "--checkpoint", str(run_dir),
            "--faces", "none", "--hop-s", "0.5", "--csv", str(tmp_path / "s.csv"), "--json", str(tmp_path / "s.json"),
            "--plot", str(tmp_path / "s.png"), *flags]


def expected_windows(seconds, window, hop):
    return int(np.floor((seconds - window) / hop + 1e-6)) + 1


def start_piped(run_dir, tmp_path, clip, loops=1):
    """predict --stream - in a process, and once it says it follows its stdin, the local source
    writing into that pipe at the clip's pace: (predict, source)."""
    read, write = os.pipe()
    proc = subprocess.Popen(stream_command(run_dir, "-", tmp_path), stdin=read, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    os.close(read)
    head = []
    while not any(line.startswith("following -") for line in head):
        head.append(proc.stderr.readline())
        assert head[-1], "".join(head)
    source = subprocess.Popen([sys.executable, SOURCE, str(clip), "-", "--loops", str(loops)], stdout=write)
    os.close(write)
    return proc, source


def test_a_piped_stream_gives_one_line_per_window(run_dir, clip_4s, tmp_path):
    """A local source piping MPEG-TS at the clip's pace into predict --stream -: the 6 windows
    of the clip, each predicted (or, on a machine too loaded for even the tiny model to keep up,
    counted as dropped), and the outputs of a file's windows on exit."""
    proc, source = start_piped(run_dir, tmp_path, clip_4s)
    out, err = proc.communicate(timeout=300)
    source.wait(timeout=30)
    assert proc.returncode == 0, err[-3000:]
    lines = [json.loads(line) for line in out.splitlines()]  # stdout: nothing but the JSON lines
    n = expected_windows(4.0, 1.28, 0.5)  # the demo model's window: its 128 fbank frames, 1.28 s
    dropped = lines[-1]["dropped"]
    assert n == 6 and len(lines) + dropped == n, err
    if dropped:  # only when the machine is so loaded that the tiny model took longer than a hop
        assert max(line["latency_s"] for line in lines) > 0.5, err
    k = [line["window"] for line in lines]
    assert k == sorted(set(k)) and k[-1] == n - 1
    assert [line["window_start"] for line in lines] == pytest.approx([0.5 * i for i in k], abs=0.05)
    assert all(line["window_end"] - line["window_start"] == pytest.approx(1.28, abs=1e-3) for line in lines)
    assert all(set(line["probabilities"]) == set(DFEW) and line["top_class"] in DFEW for line in lines)
    assert all(0 <= line["latency_s"] < 30 and not line["silent_audio"] for line in lines)
    assert f"stream stopped by end of stream: {len(lines)} windows predicted; {dropped} dropped" in err
    assert len((tmp_path / "s.csv").read_text().splitlines()) == len(lines) + 1
    assert len(json.loads((tmp_path / "s.json").read_text())) == len(lines)
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_slow_model_drops_windows_and_says_so(run_dir, clip_4s, tmp_path, capsys, monkeypatch):
    """Over loopback TCP, a model slower than the stream (1.2 s a window, a hop of 0.5 s) skips to
    the newest complete window: every window is predicted or counted as dropped."""
    from mma_dfer.inference import evaluate

    real = evaluate.clip_probabilities

    def slow(*args, **kwargs):
        time.sleep(1.2)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "clip_probabilities", slow)
    url = f"tcp://127.0.0.1:{free_port()}"
    source = subprocess.Popen([sys.executable, SOURCE, str(clip_4s), url])  # connects once predict listens
    rc = main(["predict", "--stream", url + "?listen=1", "--checkpoint", str(run_dir), "--faces", "none", "--hop-s", "0.5",
               "--csv", str(tmp_path / "s.csv")])
    out, err = capsys.readouterr()
    source.wait(timeout=30)
    assert rc == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    dropped = lines[-1]["dropped"]
    assert dropped > 0 and len(lines) + dropped == expected_windows(4.0, 1.28, 0.5), (len(lines), dropped)
    assert f"{len(lines)} windows predicted; {dropped} dropped: the model is slower than the stream" in err
    assert len((tmp_path / "s.csv").read_text().splitlines()) == len(lines) + 1


def test_sigint_stops_a_stream_cleanly(run_dir, clip_4s, tmp_path):
    proc, source = start_piped(run_dir, tmp_path, clip_4s, loops=10)
    lines = [proc.stdout.readline(), proc.stdout.readline()]
    assert all(json.loads(line)["window"] >= 0 for line in lines)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    source.kill()
    source.wait()
    assert proc.returncode == 0, err
    assert "stream stopped by SIGINT" in err and "Traceback" not in err
    predicted = len(lines) + len(out.splitlines())
    assert len((tmp_path / "s.csv").read_text().splitlines()) == predicted + 1
    assert (tmp_path / "s.png").is_file()
    assert predicted < expected_windows(40.0, 1.28, 0.5)  # it did stop before the source's end
