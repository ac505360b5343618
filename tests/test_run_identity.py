"""A run folder holds exactly what its config says (issue 18): resume, skip, init-from, the
fingerprint's fields, safe loading, exact resume after SIGKILLs anywhere, and ZeRO-3's
evaluation on ranks with unequal shards."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from mma_dfer.runs import checkpoints
from mma_dfer.training.signals import PREEMPTED_EXIT_CODE
from tests.conftest import ROOT, run_train, train_cmd
from tests.fault_plan import kill_before_marker, signal_at

DEMO = str(ROOT / "configs/demo.yaml")


def folder_state(run_dir):
    """Every file of a run folder with its bytes and mtime (to show that nothing was written)."""
    return {p.relative_to(run_dir).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def short(root, out, *sets):
    return ["--config", DEMO, "--set", f"data.root={root}", "--set", f"output_dir={out}", "--set", "train.epochs=1",
            "--set", "train.max_steps_per_epoch=2", "--set", "eval.clips=[1]", *[x for s in sets for x in ("--set", s)]]


def test_every_config_field_is_classified_and_the_docs_list_them():
    from mma_dfer.config import Config
    from mma_dfer.runs.identity import DERIVED, NOT_IDENTITY, flatten

    fields = set(flatten(Config().to_dict()))
    assert set(NOT_IDENTITY) <= fields, set(NOT_IDENTITY) - fields  # no stale names
    readme = (ROOT / "docs/training.md").read_text()
    for key in [*NOT_IDENTITY, *DERIVED]:
        assert f"`{key}`" in readme, key


def test_a_finished_run_is_skipped_and_another_config_refused_before_anything_is_written(demo_root, tmp_path):
    out = tmp_path / "run"
    first = run_train(*short(demo_root, out))
    assert "no --deepspeed_config: cpu_fp32 (the default on the CPU)" in first.stderr
    result = json.loads((out / "result.json").read_text())
    identity = json.loads((out / "identity.json").read_text())
    assert result["config_fingerprint"] == identity["config_fingerprint"] == checkpoints.latest(
        out / "checkpoints")["config_fingerprint"]
    assert result["run_identity"]["train.lr"] == 0.002 and result["origin"] == {"kind": "scratch"}
    assert result["precision"] == "float32"
    assert result["config_fingerprint"] in (next((out / "tb").glob("events*"))).read_bytes().decode("latin-1")
    before = folder_state(out)
    again = run_train(*short(demo_root, out))
    assert "already finished with this config" in again.stderr and folder_state(out) == before
    # the case 1: the same folder, another learning rate
    bad = run_train(*short(demo_root, out, "train.lr=0.5"), check=False)
    assert bad.returncode == 2, bad.stderr[-2000:]
    assert "result.json was made by another config (1 field differs)" in bad.stderr
    assert "train.lr: 0.002 in the result, 0.5 now" in bad.stderr and "--init-from" in bad.stderr
    assert folder_state(out) == before
    # a smoke run's folder cannot be mistaken for the real run's
    bad = run_train(*short(demo_root, out, "train.max_steps_per_epoch=0"), check=False)
    assert bad.returncode == 2 and "train.max_steps_per_epoch: 2 in the result, 0 now" in bad.stderr
    never = run_train(*short(demo_root, out), "--resume", "never", check=False)
    assert never.returncode == 2 and "already holds a run" in never.stderr and folder_state(out) == before


def test_an_unfinished_run_of_another_architecture_is_refused_naming_the_fields(demo_root, tmp_path):
    # the case 2: a checkpoint and no result; another model must not load into it
    out = tmp_path / "run"
    stopped = run_train(*short(demo_root, out), env=signal_at(1), check=False)
    assert stopped.returncode == PREEMPTED_EXIT_CODE
    before = folder_state(out)
    bad = run_train(*short(demo_root, out, "model.fusion=none"), check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr[-3000:]
    assert 'model.fusion: "bottleneck" in the run folder, "none" now' in bad.stderr
    assert folder_state(out) == before
    (out / "identity.json").unlink()  # the checkpoint records it too
    bad = run_train(*short(demo_root, out, "model.fusion=none"), check=False)
    assert bad.returncode == 2 and 'model.fusion: "bottleneck" in the checkpoint, "none" now' in bad.stderr


def test_init_from_starts_another_config_from_a_runs_weights_and_records_it(demo_root, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    run_train(*short(demo_root, first))
    run_train(*short(demo_root, second, "train.lr=0.001"), "--init-from", str(first))
    a, b = (json.loads((d / "result.json").read_text()) for d in (first, second))
    tag = checkpoints.resolve(first)
    assert b["origin"] == {"kind": "init-from", "checkpoint": str(tag), "config_fingerprint": a["config_fingerprint"],
                           "epoch": 1, "weights_sha256": checkpoints.weights_digest(checkpoints.saved_module(tag))}
    assert b["run_identity"]["init.weights_sha256"] == b["origin"]["weights_sha256"]
    assert a["run_identity"]["init.weights_sha256"] is None and b["config_fingerprint"] != a["config_fingerprint"]
    # from scratch with the same config is another run, not this one
    bad = run_train(*short(demo_root, second, "train.lr=0.001"), check=False)
    assert bad.returncode == 2 and "init.weights_sha256: " in bad.stderr
    # weights of another architecture do not fit
    bad = run_train(*short(demo_root, tmp_path / "third", "model.fusion=none"), "--init-from", str(first), check=False)
    assert bad.returncode == 2 and "its trainable weights do not fit this model (missing [], unexpected" in bad.stderr


MALICIOUS = """
import os, sys, torch
class Payload:
    def __reduce__(self):
        return (os.system, ("touch " + sys.argv[2],))
path = sys.argv[1]
state = torch.load(path, weights_only=False)
state["payload"] = Payload()
torch.save(state, path)
"""


def test_a_checkpoint_holding_a_code_running_pickle_is_refused(demo_root, tmp_path):
    from tests.test_train import reseal

    out = tmp_path / "run"
    common = short(demo_root, out, "train.epochs=2")
    assert run_train(*common, env=signal_at(1), check=False).returncode == PREEMPTED_EXIT_CODE
    tag = checkpoints.resolve(out)
    for name in ("mp_rank_00_model_states.pt", "rng_rank0.pt"):
        target = tag / name
        pristine = target.read_bytes()
        subprocess.run([sys.executable, "-c", MALICIOUS, str(target), str(tmp_path / "pwned")], check=True)
        assert not (tmp_path / "pwned").exists()
        reseal(tag)  # the hashes match: only the unpickling guard stands between the file and the code
        bad = run_train(*common, check=False)
        assert bad.returncode == 2 and f"{target}: refused to load" in bad.stderr, bad.stderr[-2000:]
        assert not (tmp_path / "pwned").exists()
        target.write_bytes(pristine)
        reseal(tag)


GUARDED_RESUME = """
import sys, torch
real = torch.load
def guarded(*args, **kwargs):
    if not kwargs.get("weights_only", True):
        raise SystemExit(f"torch.load(weights_only=False) of {args[0]}")
    return real(*args, **kwargs)
torch.load = guarded
sys.argv = ["train.py", *sys.argv[1:]]
from mma_dfer.training.cli import main
raise SystemExit(main())
"""


@pytest.mark.parametrize("ds_config", ["cpu_fp32.json", "zero2_bf16.json"])
def test_resume_reads_every_file_with_weights_only(demo_root, tmp_path, ds_config):
    out = tmp_path / "run"
    common = [*short(demo_root, out, "train.epochs=2"), "--deepspeed_config", str(ROOT / "ds_configs" / ds_config)]
    assert run_train(*common, env=signal_at(1), check=False).returncode == PREEMPTED_EXIT_CODE
    proc = subprocess.run([sys.executable, "-c", GUARDED_RESUME, *common], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "DS_ACCELERATOR": "cpu"}, timeout=600)
    assert proc.returncode == 0 and "resumed from" in proc.stderr, proc.stderr[-3000:]


def test_checkpoints_hold_every_cuda_generator_when_there_is_a_device(monkeypatch):
    from mma_dfer.training import rng

    states = [torch.arange(4, dtype=torch.uint8), torch.arange(4, 8, dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: states)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    saved = rng.rng_state()
    assert [t.tolist() for t in saved["cuda"]] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    rng.set_rng_state(saved, "ckpt")
    assert restored == [saved["cuda"]]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert rng.rng_state()["cuda"] == []


def kill_when(proc, path, timeout=300):
    """SIGKILL ``proc`` as soon as ``path`` exists (a real kill at a moment the test does not pick)."""
    end = time.time() + timeout
    while not path.exists() and proc.poll() is None:
        assert time.time() < end, f"{path} never appeared"
        time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_killed_anywhere_again_and_again_ends_as_an_uninterrupted_run(demo_root, tmp_path):
    common = ["--config", DEMO, "--set", f"data.root={demo_root}", "--set", "train.epochs=3",
              "--set", "train.validate_every=1"]
    run_train(*common, "--set", f"output_dir={tmp_path / 'straight'}")
    out = tmp_path / "killed"
    common += ["--set", f"output_dir={out}"]
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    # 1. killed inside the first checkpoint's write (DeepSpeed's files written, no marker yet)
    first = run_train(*common, env=kill_before_marker("epoch001"), check=False)
    assert first.returncode == -signal.SIGKILL and not checkpoints.complete_tags(out / "checkpoints")
    # 2. killed by an outside SIGKILL as soon as the second epoch's log line is written
    proc = subprocess.Popen(train_cmd(*common), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, out / "checkpoints/epoch001" / checkpoints.MARKER)
    # 3. killed inside the second checkpoint's write, after it resumed from the first
    third = run_train(*common, env=kill_before_marker("epoch002"), check=False)
    assert third.returncode == -signal.SIGKILL and checkpoints.latest(out / "checkpoints")["tag"] == "epoch001"
    # 4. killed by an outside SIGKILL while it trains epoch 3
    proc = subprocess.Popen(train_cmd(*common), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, out / "checkpoints/epoch002" / checkpoints.MARKER)
    done = run_train(*common)
    assert "resumed from" in done.stderr
    assert not [p for p in (out / "checkpoints").iterdir() if not (p / checkpoints.MARKER).exists()]  # no debris
    from tests.test_train import final_module

    a, b = final_module(tmp_path / "straight"), final_module(out)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ra, rb = (json.loads((d / "result.json").read_text()) for d in (tmp_path / "straight", out))
    for key in ("uar", "war", "uar_2clip", "war_2clip", "confusion_matrix", "confusion_matrix_2clip",
                "config_fingerprint"):
        assert ra[key] == rb[key], key


def test_evaluation_runs_in_the_runs_own_precision_and_reproduces_its_result(demo_root, tmp_path):
    out = tmp_path / "run"
    run_train(*short(demo_root, out, "train.epochs=2", "train.max_steps_per_epoch=0", "eval.clips=[1, 2]"),
              "--deepspeed_config", str(ROOT / "ds_configs/cpu_bf16.json"))
    trained = json.loads((out / "result.json").read_text())

    def evaluate(dest, *extra):
        proc = subprocess.run([sys.executable, str(ROOT / "launch/evaluate.py"), "--checkpoint", str(out), "--output",
                               str(tmp_path / dest), "--predictions", str(tmp_path / f"{dest}.json"), *extra],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return (proc.stdout, json.loads((tmp_path / dest / "result.json").read_text()),
                json.loads((tmp_path / f"{dest}.json").read_text()))

    stdout, own, own_probs = evaluate("own")
    assert "autocast-bfloat16" in stdout and own["precision"] == trained["precision"] == "autocast-bfloat16"
    for key in ("uar", "war", "uar_2clip", "war_2clip", "confusion_matrix", "confusion_matrix_2clip",
                "config_fingerprint", "run_identity"):
        assert own[key] == trained[key], key
    _, fp32, fp32_probs = evaluate("fp32", "--precision", "fp32")
    assert fp32["precision"] == "float32" and fp32["config_fingerprint"] != trained["config_fingerprint"]
    assert [r["probabilities"] for r in fp32_probs] != [r["probabilities"] for r in own_probs]
    # another fold: evaluated, said, and recorded as what it is (the weights' run named apart)
    other = subprocess.run([sys.executable, str(ROOT / "launch/evaluate.py"), "--checkpoint", str(out), "--clips", "1",
                            "--set", "data.fold=2", "--output", str(tmp_path / "fold2")], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert other.returncode == 0 and "data.fold: 1 in the checkpoint, 2 now" in other.stderr, other.stderr[-2000:]
    fold2 = json.loads((tmp_path / "fold2/result.json").read_text())
    assert fold2["fold"] == fold2["run_identity"]["data.fold"] == 2 and fold2["run_identity"]["train.lr"] == 0.002
    assert fold2["checkpoint_fingerprint"] == trained["config_fingerprint"] != fold2["config_fingerprint"]
    # a config that builds another model is refused, naming the fields
    bad = subprocess.run([sys.executable, str(ROOT / "launch/evaluate.py"), "--checkpoint", str(out), "--config", DEMO,
                          "--set", f"data.root={demo_root}", "--set", "model.fusion=add"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and 'model.fusion: "bottleneck" in the checkpoint, "add" now' in bad.stderr, \
        bad.stderr[-2000:]


@pytest.mark.slow
def test_zero3_on_three_ranks_with_unequal_shards_evaluates_every_clip_once(demo_root, tmp_path):
    # 14 test clips over 3 ranks in batches of 2: shards of 5/5/4 clips, 3/3/2 batches unpadded;
    # ZeRO-3 gathers the weights in every forward pass, so every rank must run as many
    ds = tmp_path / "zero3.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0}}))
    out = tmp_path / "run"
    run_train("--config", DEMO, "--deepspeed_config", str(ds), "--set", f"data.root={demo_root}",
              "--set", f"output_dir={out}", "--set", "train.epochs=1", "--set", "train.batch_size=6",
              "--set", "eval.batch_size=2", "--set", "train.collective_timeout_s=120",
              launcher="deepspeed", gpus=3)
    trained = json.loads((out / "result.json").read_text())
    assert trained["world_size"] == 3 and trained["num_test_clips"] == 14
    proc = subprocess.run([sys.executable, str(ROOT / "launch/evaluate.py"), "--checkpoint", str(out), "--output",
                           str(tmp_path / "eval")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = json.loads((tmp_path / "eval/result.json").read_text())
    for key in ("uar", "war", "uar_2clip", "war_2clip", "confusion_matrix", "confusion_matrix_2clip"):
        assert single[key] == trained[key], key
