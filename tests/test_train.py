"""Training through DeepSpeed on CPU: learning, exact resume, 2 ranks, errors, outputs."""
import json

import pytest
import torch

from mma_dfer.config import load_config
from mma_dfer.runs import checkpoints
from mma_dfer.training import TrainingError
from mma_dfer.training.ds_config import deepspeed_config
from mma_dfer.training.signals import PREEMPTED_EXIT_CODE
from tests.conftest import ROOT, run_train
from tests.fault_plan import signal_at

DEMO = str(ROOT / "configs/demo.yaml")


def final_module(run_dir):
    tag = checkpoints.resolve(run_dir)
    return torch.load(tag / "mp_rank_00_model_states.pt", weights_only=True)["module"]


def reseal(tag_dir):
    """Record a hand-edited checkpoint's new file hashes in its marker (as if it was written so)."""
    from mma_dfer.utils import atomic_write_json

    atomic_write_json(tag_dir / checkpoints.MARKER,
                      {**checkpoints.marker(tag_dir), "files": checkpoints.file_table(tag_dir)})


@pytest.mark.slow
def test_demo_learns_through_the_deepspeed_launcher(demo_root, tmp_path):
    from mma_dfer.data.annotations import read_split
    from mma_dfer.data.dataset import ClipDataset
    from mma_dfer.inference.evaluate import evaluate
    from mma_dfer.utils import seed_everything
    from mma_dfer.models import build_model

    out = tmp_path / "run"
    run_train("--config", DEMO, "--deepspeed_config", str(ROOT / "ds_configs/cpu_fp32.json"),
              "--set", f"data.root={demo_root}", "--set", f"output_dir={out}", launcher="deepspeed")
    result = json.loads((out / "result.json").read_text())
    for key in ("dataset", "fold", "resolution", "epoch", "uar", "war", "uar_2clip", "war_2clip", "num_test_clips"):
        assert key in result, key
    assert result["epoch"] == 6 and result["num_test_clips"] == 14 and result["dataset"] == "dfew"
    assert result["uar"] > 50 and result["uar_2clip"] > 50  # chance: 14.3
    # the same model before training is at chance level on the same test set
    cfg = load_config(DEMO, [f"data.root={demo_root}"])
    seed_everything(cfg.train.seed)
    untrained = build_model(cfg).eval()
    base = evaluate(untrained, ClipDataset(read_split(cfg.data, "test"), cfg.data, train=False), 14, 0, "cpu", 7)
    assert base["uar"] < 40
    # outputs: resolved config, TensorBoard events with the promised tags, json log
    assert load_config(out / "config.yaml").data.root == str(demo_root)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tb")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/samples_per_s", "test/uar", "test/war"} <= tags
    assert "test/confusion" in events.Tags()["images"]
    assert (out / "log.jsonl").read_text().count("train/loss") >= 6


def test_kill_and_resume_gives_identical_weights_and_metrics(demo_root, tmp_path):
    common = ["--config", DEMO, "--set", f"data.root={demo_root}", "--set", "train.epochs=2",
              "--set", "train.validate_every=1"]
    run_train(*common, "--set", f"output_dir={tmp_path / 'straight'}")
    assert '"test/uar"' in (tmp_path / "straight/log.jsonl").read_text()  # validation after epoch 1
    stopped = run_train(*common, "--set", f"output_dir={tmp_path / 'killed'}", env=signal_at(10), check=False)
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr[-3000:]
    assert checkpoints.latest(tmp_path / "killed/checkpoints")["tag"] == "step0000010"
    assert not (tmp_path / "killed/result.json").exists()
    resumed = run_train(*common, "--set", f"output_dir={tmp_path / 'killed'}")
    assert "resumed from" in resumed.stderr
    a, b = final_module(tmp_path / "straight"), final_module(tmp_path / "killed")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit-identical on CPU fp32
    ra, rb = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("straight", "killed"))
    for key in ("uar", "war", "uar_2clip", "war_2clip", "confusion_matrix"):
        assert ra[key] == rb[key], key


@pytest.mark.slow
def test_two_ranks_match_one_rank(demo_root, tmp_path):
    # drop-path draws come from per-rank streams, so it is off here; what remains is the order
    # of the gradient all-reduce: weights agree to 1e-5
    common = ["--config", DEMO, "--deepspeed_config", str(ROOT / "ds_configs/cpu_fp32.json"),
              "--set", f"data.root={demo_root}", "--set", "train.epochs=1", "--set", "model.drop_path_rate=0.0"]
    run_train(*common, "--set", f"output_dir={tmp_path / 'one'}", launcher="deepspeed", gpus=1)
    run_train(*common, "--set", f"output_dir={tmp_path / 'two'}", launcher="deepspeed", gpus=2)
    a, b = final_module(tmp_path / "one"), final_module(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5, msg=k)
    ra, rb = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("one", "two"))
    assert rb["world_size"] == 2 and ra["num_test_clips"] == rb["num_test_clips"] == 14
    assert abs(ra["uar"] - rb["uar"]) < 1e-6


def test_half_written_or_truncated_checkpoint_is_never_picked(tmp_path):
    from mma_dfer.safe_files import CheckpointError
    from mma_dfer.utils import atomic_write_json

    def complete(tag, step):
        (tmp_path / tag).mkdir()
        (tmp_path / tag / "mp_rank_00_model_states.pt").write_bytes(b"weights" * 100)
        atomic_write_json(tmp_path / tag / checkpoints.MARKER,
                          {"tag": tag, "global_step": step, "epoch": 1, "step_in_epoch": 0,
                           "files": checkpoints.file_table(tmp_path / tag)})

    complete("epoch001", 7)
    (tmp_path / "epoch002").mkdir()  # a save killed before its marker
    (tmp_path / "epoch002" / "mp_rank_00_model_states.pt").write_bytes(b"partial")
    assert checkpoints.latest(tmp_path)["tag"] == "epoch001"
    complete("epoch003", 21)
    (tmp_path / "epoch003/mp_rank_00_model_states.pt").write_bytes(b"weights" * 50)  # truncated afterwards
    assert checkpoints.latest(tmp_path)["tag"] == "epoch001"
    (tmp_path / "epoch001/mp_rank_00_model_states.pt").write_bytes(b"weighTs" * 100)  # same size, other bytes
    with pytest.raises(CheckpointError, match="epoch001/mp_rank_00_model_states.pt: changed since"):
        checkpoints.verify(tmp_path / "epoch001")


def test_non_finite_loss_stops_and_leaves_the_checkpoint(demo_root, tmp_path):
    # lr 1e30: epoch 1's one step is finite and blows the weights up; epoch 2's loss is not finite
    out = tmp_path / "run"
    bad = run_train("--config", DEMO, "--set", f"data.root={demo_root}", "--set", f"output_dir={out}",
                    "--set", "train.epochs=2", "--set", "train.max_steps_per_epoch=1", "--set", "train.lr=1e30",
                    check=False)
    assert bad.returncode == 2 and "non-finite loss at epoch 2" in bad.stderr, bad.stderr[-2000:]
    assert checkpoints.latest(out / "checkpoints")["tag"] == "epoch001"
    checkpoints.verify(out / "checkpoints/epoch001")  # every file as its marker recorded it
    assert not (out / "result.json").exists()


def test_bf16_engine_trains_and_resumes(demo_root, tmp_path):
    # a torch_autocast JSON: fp32 trainable weights (and AdamW), the frozen ones stored in bf16
    out = tmp_path / "run"
    common = ["--config", DEMO, "--deepspeed_config", str(ROOT / "ds_configs/cpu_bf16.json"),
              "--set", f"data.root={demo_root}", "--set", f"output_dir={out}", "--set", "train.max_steps_per_epoch=2"]
    stopped = run_train(*common, "--set", "train.epochs=2", env=signal_at(2), check=False)
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr[-3000:]
    module = final_module(out)
    assert {v.dtype for v in module.values()} == {torch.float32}
    resumed = run_train(*common, "--set", "train.epochs=2")
    assert "resumed from" in resumed.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["epoch"] == 2 and 0 <= result["uar"] <= 100 and result["precision"] == "autocast-bfloat16"


def test_fp16_autocast_engine_scales_the_loss_and_resumes_it(demo_root, tmp_path):
    # the shipped fp16 JSONs are torch_autocast (dynamic loss scaling by torch's GradScaler, which
    # DeepSpeed does not checkpoint: the trainer does), so they run on the CPU too
    out = tmp_path / "run"
    common = ["--config", DEMO, "--deepspeed_config", str(ROOT / "ds_configs/zero0_fp16.json"),
              "--set", f"data.root={demo_root}", "--set", f"output_dir={out}", "--set", "train.max_steps_per_epoch=2",
              "--set", "train.log_every=1", "--set", "eval.clips=[1]"]
    from mma_dfer.safe_files import safe_load

    stopped = run_train(*common, "--set", "train.epochs=2", env=signal_at(2), check=False)
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr[-3000:]
    tag = checkpoints.resolve(out)
    states = tag / checkpoints.MODEL_STATES
    client = safe_load(states)
    def scales():
        logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        return [r["train/loss_scale"] for r in logged if "train/loss_scale" in r]
    assert client["grad_scaler"]["scale"] == scales()[-1] <= 2 ** 16
    client["grad_scaler"]["scale"] = 1024.0  # far from GradScaler's fresh 65536
    torch.save(client, states)
    reseal(tag)  # a checkpoint edited by hand would be refused: record its new hashes
    run_train(*common, "--set", "train.epochs=2")
    assert len(scales()) == 4 and scales()[2] in (1024.0, 512.0)  # continued from the checkpoint's scale
    assert json.loads((out / "result.json").read_text())["precision"] == "autocast-float16"


def test_compiled_training_equals_eager_training(demo_root, tmp_path):
    # train.compile through the DeepSpeed engine: the whole step captured (backend aot_eager runs
    # the captured graphs with eager kernels, so the run must end bit-identical, drop-path draws
    # included); evaluation runs eager, checkpoints and result.json as usual
    common = ["--config", DEMO, "--set", f"data.root={demo_root}", "--set", "train.epochs=1",
              "--set", "train.max_steps_per_epoch=3", "--set", "train.compile_backend=aot_eager"]
    run_train(*common, "--set", "train.compile=eager", "--set", f"output_dir={tmp_path / 'eager'}")
    compiled = run_train(*common, "--set", "train.compile=default", "--set", f"output_dir={tmp_path / 'compiled'}")
    assert "torch.compile: mode default, backend aot_eager" in compiled.stderr
    a, b = final_module(tmp_path / "eager"), final_module(tmp_path / "compiled")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ra, rb = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("eager", "compiled"))
    assert (ra["uar"], ra["war"], ra["confusion_matrix"]) == (rb["uar"], rb["war"], rb["confusion_matrix"])


def test_zero3_run_resumes_and_evaluates_without_deepspeed(demo_root, tmp_path):
    # every weight partitioned (threshold 0): the prompts, pos-embeds and gates are read outside
    # their modules' forward, and the checkpoint must still give the run's own result offline
    import subprocess
    import sys

    ds = tmp_path / "zero3.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
                              "bf16": {"enabled": True}}))
    out = tmp_path / "run"
    common = ["--config", DEMO, "--deepspeed_config", str(ds), "--set", f"data.root={demo_root}",
              "--set", f"output_dir={out}", "--set", "train.max_steps_per_epoch=2"]
    stopped = run_train(*common, "--set", "train.epochs=2", env=signal_at(3), check=False)
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr[-3000:]
    assert "resumed from" in run_train(*common, "--set", "train.epochs=2").stderr
    tag = checkpoints.resolve(out)
    assert not (tag / checkpoints.MODEL_STATES).exists()
    module = checkpoints.saved_module(tag)
    cfg = load_config(out / "config.yaml")
    from mma_dfer.models import build_model

    model = build_model(cfg, load_pretrained=False)
    assert set(module) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(module[n].shape == p.shape for n, p in model.named_parameters() if n in module)
    proc = subprocess.run([sys.executable, str(ROOT / "launch/evaluate.py"), "--config", str(out / "config.yaml"),
                           "--checkpoint", str(out), "--output", str(tmp_path / "eval")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained, evaluated = (json.loads(p.read_text()) for p in (out / "result.json", tmp_path / "eval/result.json"))
    for key in ("epoch", "uar", "war", "uar_2clip", "war_2clip", "confusion_matrix", "confusion_matrix_2clip"):
        assert evaluated[key] == trained[key], key


def test_bad_root_and_fold_fail_fast_with_the_field_named(tmp_path):
    proc = run_train("--config", DEMO, "--set", f"data.root={tmp_path / 'none'}", check=False)
    assert proc.returncode == 2 and f"data.root={tmp_path / 'none'} does not exist" in proc.stderr
    proc = run_train("--config", DEMO, "--set", "data.fold=6", check=False)
    assert proc.returncode == 2 and "data.fold=6 is not a fold" in proc.stderr
    proc = run_train("--config", DEMO, "--set", "train.epoch=3", check=False)
    assert proc.returncode == 2 and "unknown config key 'train.epoch' (did you mean train.epochs?)" in proc.stderr


def test_deepspeed_config_conflicts_are_errors(tmp_path):
    cfg = load_config(DEMO)
    bad = tmp_path / "ds.json"
    bad.write_text(json.dumps({"train_batch_size": 16}))
    with pytest.raises(TrainingError, match="train_batch_size=16 disagrees"):
        deepspeed_config(bad, cfg, 1)
    bad.write_text(json.dumps({"optimizer": {"type": "Adam"}}))
    with pytest.raises(TrainingError, match="remove 'optimizer'"):
        deepspeed_config(bad, cfg, 1)
    with pytest.raises(TrainingError, match="train.batch_size=8 .* world size 3"):
        deepspeed_config(ROOT / "ds_configs/cpu_fp32.json", cfg, 3)
    if not torch.cuda.is_available():
        bad.write_text(json.dumps({"fp16": {"enabled": True}}))
        with pytest.raises(TrainingError, match="the whole-module fp16 mode needs a GPU"):
            deepspeed_config(bad, cfg, 1)
    ds = deepspeed_config(ROOT / "ds_configs/zero2_bf16.json", cfg, 2)
    assert (ds["train_batch_size"], ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]) == (8, 4, 1)
    assert ds["gradient_clipping"] == 0.0  # written even when off: DeepSpeed's own default is 1.0
    bad.write_text(json.dumps({"gradient_clipping": 1.0}))
    with pytest.raises(TrainingError, match="gradient_clipping=1.0 disagrees"):
        deepspeed_config(bad, cfg, 1)
    cfg.train.grad_clip = 1.0
    with pytest.raises(TrainingError, match="train.grad_clip=1.0 needs the gradient norm"):
        deepspeed_config(ROOT / "ds_configs/zero2_bf16.json", cfg, 1)
    cfg.train.grad_clip = 0.0
    cfg.train.micro_batch_size = 2
    assert deepspeed_config(ROOT / "ds_configs/cpu_fp32.json", cfg, 2)["gradient_accumulation_steps"] == 2


def test_cosine_schedule_is_stepped_per_epoch():
    from mma_dfer.training.schedule import cosine_lr

    cfg = load_config(None)
    lrs = [cosine_lr(cfg, e, 0, 100) for e in range(25)]
    # the authors' torch.optim.lr_scheduler.CosineAnnealingLR(T_max=25), stepped per epoch
    opt = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=25)
    for e in range(25):
        assert lrs[e] == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-15), e
        opt.step()
        sched.step()
    assert cosine_lr(cfg, 3, 50, 100) == lrs[3]
    cfg.train.schedule_step = "iteration"
    assert lrs[3] > cosine_lr(cfg, 3, 50, 100) > lrs[4]


def test_evaluate_reproduces_a_training_runs_result(demo_root, tmp_path):
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    run_train("--config", DEMO, "--set", f"data.root={demo_root}", "--set", "train.epochs=2", "--set",
              f"output_dir={run_dir}")
    proc = subprocess.run([sys.executable, str(ROOT / "launch/evaluate.py"), "--config", str(run_dir / "config.yaml"),
                           "--checkpoint", str(run_dir), "--output", str(tmp_path / "eval")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained, evaluated = (json.loads(p.read_text()) for p in (run_dir / "result.json", tmp_path / "eval/result.json"))
    for key in ("dataset", "fold", "resolution", "epoch", "uar", "war", "uar_2clip", "war_2clip", "num_test_clips",
                "confusion_matrix", "confusion_matrix_2clip", "predictions", "predictions_2clip", "intervals", "seed"):
        assert evaluated[key] == trained[key], key
    # the per-clip predictions behind the intervals (issue 27): one per test clip, scored as the result
    from mma_dfer import stats

    clips = trained["predictions"]
    assert len(clips["index"]) == trained["num_test_clips"] and trained["intervals"]["uar"] is not None
    uar, war = stats.scores(clips["label"], [clips["pred"]])
    assert (uar[0], war[0]) == pytest.approx((trained["uar"], trained["war"]))
    assert evaluated["checkpoint_kind"] == "mma-dfer"
    older = subprocess.run([sys.executable, str(ROOT / "launch/evaluate.py"), "--config", str(run_dir / "config.yaml"),
                            "--checkpoint", str(run_dir / "checkpoints/epoch001"), "--clips", "1", "--output",
                            str(tmp_path / "eval1")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert older.returncode == 0, older.stderr[-3000:]
    assert json.loads((tmp_path / "eval1/result.json").read_text())["epoch"] == 1  # the tag given, not the newest


def test_evaluate_an_authors_checkpoint(demo_root, tmp_path, monkeypatch):
    import subprocess
    import sys

    from tests.test_checkpoints import authors_model, authors_state, save_authors_container

    path = tmp_path / "DFEW_set_1_model.pth"
    save_authors_container(path, authors_state(authors_model("dfew")), monkeypatch)
    proc = subprocess.run([sys.executable, str(ROOT / "launch/evaluate.py"), "--config", DEMO, "--set",
                           f"data.root={demo_root}", "--checkpoint", str(path), "--clips", "1", "--output",
                           str(tmp_path / "eval")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "eval/result.json").read_text())
    assert result["checkpoint_kind"] == "authors" and result["epoch"] == 25 and result["uar_2clip"] is None
    assert result["resolution"] == 32 and result["num_test_clips"] == 14
    bad = subprocess.run([sys.executable, str(ROOT / "launch/evaluate.py"), "--config", DEMO, "--set",
                          "data.dataset=mafw", "--checkpoint", str(path)], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "has 7 classes but data.dataset=mafw has 11" in bad.stderr


def test_resume_from_an_explicit_checkpoint_writes_into_the_new_run(demo_root, tmp_path):
    # --resume PATH continues the same config's run from a checkpoint elsewhere (new checkpoints
    # go to this run's folder); another config is refused, naming the field
    first, second = tmp_path / "first", tmp_path / "second"
    common = ["--config", DEMO, "--set", f"data.root={demo_root}", "--set", "train.epochs=2"]
    stopped = run_train(*common, "--set", f"output_dir={first}", env=signal_at(3), check=False)
    assert stopped.returncode == PREEMPTED_EXIT_CODE
    bad = run_train(*common, "--set", f"output_dir={second}", "--set", "train.seed=2",
                    "--resume", str(first / "checkpoints/step0000003"), check=False)
    assert bad.returncode == 2 and "train.seed: 1 in the checkpoint, 2 now" in bad.stderr and not second.exists()
    proc = run_train(*common, "--set", f"output_dir={second}", "--resume", str(first / "checkpoints/step0000003"))
    assert "resumed from" in proc.stderr
    assert checkpoints.latest(second / "checkpoints")["tag"] == "epoch002"
    assert [m["tag"] for m in checkpoints.complete_tags(first / "checkpoints")] == ["step0000003"]
    assert json.loads((second / "result.json").read_text())["epoch"] == 2
    bad = run_train(*common, "--set", f"output_dir={tmp_path / 'x'}", "--resume", str(tmp_path / "nothing"), check=False)
    assert bad.returncode == 2 and "not a complete checkpoint" in bad.stderr


def test_results_are_written_readable_by_others(tmp_path):
    # an atomic write goes through mkstemp (mode 0600): the file must get the umask's mode, as
    # open() would give it, or other users of a cluster cannot read the results
    import os

    from mma_dfer.utils import atomic_write_json

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "result.json", {"uar": 1.0})
    finally:
        os.umask(old)
    assert (tmp_path / "result.json").stat().st_mode & 0o777 == 0o644


SYNC_COUNT = """
import json, sys, torch, deepspeed
from deepspeed.accelerator import get_accelerator
from mma_dfer.config import load_config
from mma_dfer.training import cpu_op
from mma_dfer.training.distributed import detect
from mma_dfer.training.engine import build_engine
from mma_dfer.training.ds_config import deepspeed_config
from mma_dfer.models import build_model

detect().export()
cpu_op.prepare(1, True)  # as the trainer: one process needs no CPU op (nothing to build or wait for)
deepspeed.init_distributed(dist_backend="gloo", auto_mpi_discovery=False)
cfg = load_config(sys.argv[1], ["train.compile=eager"])
built = build_engine(build_model(cfg, load_pretrained=False).train(), cfg, deepspeed_config(sys.argv[2], cfg, 1))
accelerator, calls = get_accelerator(), []
accelerator.synchronize = lambda *a, **k: calls.append(1)
d = cfg.data
video, audio = torch.rand(8, d.num_frames, 3, d.resolution, d.resolution), torch.randn(8, 1, d.audio_frames, d.mel_bins)
for _ in range(5):
    built.engine.backward(built.engine(video, audio).float().logsumexp(-1).mean())
    built.engine.step()
print(json.dumps(len(calls)))
"""


@pytest.mark.parametrize("ds_config", ["cpu_bf16.json", "cpu_fp32.json"])
def test_the_deepspeed_step_never_synchronises_the_device(tmp_path, ds_config):
    """DeepSpeed's throughput timer synchronises the device twice per step (at forward and at step)
    unless the JSON turns it off: the host then cannot queue step n+1 while the GPU runs step n.
    The shipped JSONs and the trainer's defaults turn it off; a JSON that turns it on shows the count."""
    import subprocess
    import sys

    def syncs(path):
        proc = subprocess.run([sys.executable, "-c", SYNC_COUNT, str(ROOT / "configs/tiny.yaml"), str(path)],
                              capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    assert syncs(ROOT / "ds_configs" / ds_config) == 0
    timed = json.loads((ROOT / "ds_configs" / ds_config).read_text())
    timed["timers"] = {"throughput": {"enabled": True}}
    (tmp_path / "timed.json").write_text(json.dumps(timed))
    assert syncs(tmp_path / "timed.json") == 6  # the check sees them: two per step after its 2 warm-up steps
    del timed["timers"]
    (tmp_path / "default.json").write_text(json.dumps(timed))
    assert syncs(tmp_path / "default.json") == 0  # a user's JSON without "timers": off by default
