"""The GPU check's bookkeeping, on rows and logs given to it: which row answers which goal, the
verdicts, the end-to-end rate read off a training log (its first window, which compiles, left out)."""
import pytest

from bench import gpu_check


def row(label, res, batch, precision, clips_per_s, compile_mode="default"):
    from bench.train_step import suffix

    return {"label": label + suffix(compile_mode), "nominal": [res, batch], "precision": precision,
            "clips_per_s": clips_per_s}


def test_goals_table_reads_each_goal_off_its_row(tmp_path):
    c = gpu_check.Check(tmp_path, budget=100, rehearse=False)
    c.rows = [row("plain", 160, 8, "bf16", 400.0), row("deepspeed zero0_bf16.json", 160, 8, "bf16", 396.0),
              row("deepspeed zero2_bf16.json", 160, 8, "bf16", 300.0),
              row("deepspeed zero0_bf16.json", 160, 8, "bf16", 999.0, compile_mode="eager"),  # not the shipped mode
              {**row("plain", 160, 32, "bf16", 600.0), "error": "out of memory"}]
    c.e2e = {"rate_median": 380.0}
    c.numerics = ("| fp32 compiled | 1e-7 | 1e-7 | 3e-7 (head.bias) | 1e-05 | PASS |\n"
                  "| bf16 eager | 2e-3 | 5e-3 | 5e-1 (fusion.0.video_down.1.bias) | 1e-02 | PASS |\n")
    lines = {ln.split(" | ")[0].lstrip("| "): ln for ln in c.goals_table().splitlines()[2:]}
    assert lines["1. batch 8, zero0_bf16.json"].endswith("| 396.0 clips/s | PASS |")
    assert lines["1. batch 8, zero2_bf16.json"].endswith("| 300.0 clips/s | FAIL |")
    assert lines["3. DeepSpeed/plain, batch 8 (zero0)"].endswith("| 0.990 | PASS |")
    assert lines["2. batch 32, zero0_bf16.json"].endswith("| not run | - |")  # an errored row is no number
    assert lines["3. DeepSpeed/plain, batch 32 (zero0)"].endswith("| not run | - |")
    assert "| 0.960 (380.0 / 396.0) | PASS |" in lines["5. end to end / step benchmark (batch 8, zero0)"]
    assert lines["6. same function (bench/numerics.py)"].endswith("fp32 compiled: PASS, bf16 eager: PASS | PASS |")


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
