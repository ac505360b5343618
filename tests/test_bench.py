"""The GPU check's bookkeeping, on rows and logs given to it: which row answers which goal, the
verdicts, the end-to-end rate read off a training log (its first window, which compiles, left out)."""
import pytest

from bench import gpu_check


def row(engine, res, batch, precision, clips_per_s, compile_mode="default", ds_config="", **extra):
    from bench.train_step import suffix

    return {"engine": engine, "ds_config": ds_config, "label": f"{engine} {ds_config}".strip() + suffix(compile_mode),
            "nominal": [res, batch], "precision": precision, "compile": compile_mode, "clips_per_s": clips_per_s,
            **extra}


def test_goals_table_reads_each_goal_off_its_row(tmp_path):
    c = gpu_check.Check(tmp_path, budget=100, rehearse=False)
    z0, z2 = "zero0_bf16.json", "zero2_bf16.json"
    c.rows = [row("deepspeed", 160, 8, "bf16", 410.0, "reduce-overhead", z0, start_s=95.0),
              row("plain", 160, 8, "bf16", 415.0, "reduce-overhead"),
              row("deepspeed", 160, 8, "bf16", 300.0, "default", z0), row("plain", 160, 8, "bf16", 310.0),
              row("deepspeed", 160, 8, "bf16", 999.0, "eager", z0),  # not a mode the check compares
              row("deepspeed", 160, 8, "bf16", 350.0, "reduce-overhead", z2),
              row("deepspeed", 160, 32, "bf16", 0, "reduce-overhead", z0, error="out of memory"),
              row("deepspeed", 160, 32, "bf16", 0, "reduce-overhead", z2, error="misaligned address"),
              row("deepspeed", 160, 8, "bf16", 401.0, "reduce-overhead", z0, start_s=12.0, rerun=True)]
    c.cold = {"label": c.rows[0]["label"], "start_s": 95.0}
    c.e2e = {"rate_median": 395.0, "mode": "reduce-overhead"}
    c.predict = {"none": {"videos_per_s": 3.5, "videos": 16, "settings": "--videos 16"},
                 "mtcnn": {"error": "--faces mtcnn needs facenet-pytorch"}}
    c.numerics = ("| bf16 eager | 2e-3 | 5e-3 | 5e-1 (fusion.0.video_down.1.bias) | 1e-02 | PASS |\n"
                  "| fp16 compiled | 2e-1 | 5e-1 | 9e-1 (head.bias) | 1e-02 | FAIL |\n")
    c.resume = {"kill_at": 100, "stopped_rc": 75, "expected_rc": 75, "resumed_rc": 0, "resumed": True,
                "identical": False, "tensors": 90, "tensors_differing": 3, "max_abs_diff": 1e-6, "metrics_differing": [],
                "uninterrupted_twice": {"identical": False, "tensors_differing": 2, "max_abs_diff": 2e-6}}
    assert c.mode() == "reduce-overhead"  # the later phases run the faster mode at batch 8
    lines = {ln.split(" | ")[0].lstrip("| "): ln for ln in c.goals_table().splitlines()[2:]}
    assert lines["1. batch 8, zero0_bf16.json"].endswith("| 410.0 clips/s (reduce-overhead) | PASS |")
    assert lines["1. batch 8, zero2_bf16.json"].endswith("| 350.0 clips/s (reduce-overhead) | FAIL |")
    assert "| 1.367 (410.0 / 300.0) |" in lines["1. CUDA graphs (reduce-overhead) / default, batch 8, zero0"]
    assert lines["3. DeepSpeed/plain, batch 8 (zero0)"].endswith("| 0.988 (reduce-overhead) | PASS |")
    assert lines["2. batch 32, zero0_bf16.json"].endswith("| failed: out of memory | FAIL |")  # an error is no number
    assert lines["3. DeepSpeed/plain, batch 32 (zero0)"].endswith("| not run | - |")
    assert lines["3. ZeRO-2 at batch 32 (zero2_bf16.json)"].endswith("| failed: misaligned address | FAIL |")
    assert lines["4. 224 px, batch 8, zero0_bf16.json"].endswith("| not run | - |")
    assert "| 95.0 s (deepspeed zero0_bf16.json compiled (reduce-overhead)) | - |" in \
        lines["5. start to first timed step, first run (empty cache)"]
    assert lines["5. start to first timed step, second run (warm cache)"].endswith(
        "| 12.0 s (deepspeed zero0_bf16.json compiled (reduce-overhead)) | PASS |")  # the rerun, not a goal-1 row
    assert "| 0.963 (395.0 / 410.0, reduce-overhead) | PASS |" in lines["6. end to end / step benchmark (batch 8, zero0)"]
    assert lines["6. predict, ViT-B, generated face clips"].endswith("| 3.50 videos/s (--videos 16) | - |")
    assert lines["6. predict, ViT-B, MTCNN on a real face clip"].endswith("needs facenet-pytorch | FAIL |")
    assert lines["7. same function (bench/numerics.py, logits and gradients)"].endswith(
        "| bf16 eager: PASS, fp16 compiled: FAIL | FAIL |")
    resumed = lines["7. killed and resumed run = uninterrupted run"]
    assert "3 of 90 tensors differ" in resumed and "the kernels are not deterministic" in resumed
    assert resumed.endswith("| FAIL |")


def test_kernels_are_sorted_into_the_kinds_of_work():
    """Where the batch-32 step's device time goes (goal 2), read off the profiler's kernel names."""
    from bench.train_step import kernel_category

    names = {"sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64": "gemm", "nvjet_tst_128x64_64x8": "gemm",
             "triton_tem_fused_addmm_gelu_3": "gemm", "void pytorch_flash::flash_bwd_dq_dk_dv_loop_kernel": "attention",
             "fmha_cutlassF_bf16_aligned_64x64_rf_sm80": "attention", "triton_per_fused_native_layer_norm_7": "triton fused",
             "void at::native::multi_tensor_apply_kernel<FusedAdamMathFunctor>": "optimizer",
             "Memcpy DtoD (Device -> Device)": "copy", "void at::native::vectorized_elementwise_kernel": "other"}
    assert {n: kernel_category(n) for n in names} == names


def test_training_log_rates_and_epoch_costs():
    log = "\n".join([
        "[rank0] 2026-11-27 10:00:00,000 INFO epoch 1 step 25/203: loss=2 lr=1e-4 samples_per_s=3.5 memory_mb=1",
        "[rank0] 2026-11-27 10:00:01,000 INFO epoch 1 step 50/203: loss=2 lr=1e-4 samples_per_s=300 memory_mb=1",
        "[rank0] 2026-11-27 10:00:02,000 INFO epoch 1 step 75/203: loss=2 lr=1e-4 samples_per_s=320 memory_mb=1",
        "[rank0] 2026-11-27 10:00:03,000 INFO epoch 1 step 100/203: loss=2 lr=1e-4 samples_per_s=310 memory_mb=1",
        "[rank0] 2026-11-27 10:00:04,500 INFO saved checkpoint /x/epoch001",
        "[rank0] 2026-11-27 10:00:10,000 INFO fold 1 res 160: UAR 20.00 WAR 20.00 (2-clip - / -); wrote /x/result.json"])
    parsed = gpu_check.parse_train_log(log)
    assert parsed["rates"] == [3.5, 300.0, 320.0, 310.0] and parsed["rate_median"] == 310.0
    assert parsed["checkpoint_s"] == pytest.approx(1.5) and parsed["evaluation_s"] == pytest.approx(5.5)


def test_zero_1_2_rows_get_their_own_compilation():
    """ZeRO-1/2 put the parameters into a flat buffer at unaligned offsets: a graph compiled on
    aligned parameters must not be reused for them (the H200's "misaligned address")."""
    from bench.train_step import parameter_layout

    def spec(engine, ds=""):
        return {"engine": engine, "ds_config": ds}
    assert parameter_layout(spec("plain")) == parameter_layout(spec("deepspeed", "zero0_bf16.json")) == "own"
    assert parameter_layout(spec("deepspeed", "zero1_bf16.json")) == parameter_layout(spec("deepspeed", "zero2_fp16.json")) == "flat"
    assert parameter_layout(spec("deepspeed", "zero3_bf16.json")) == "partitioned"


def test_unknown_phase_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        gpu_check.main(["--out", str(tmp_path), "--phases", "b8,b64"])
    assert e.value.code == 2 and "unknown --phases ['b64']" in capsys.readouterr().err
