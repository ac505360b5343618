"""UAR/WAR against hand-computed cases, and the gathering of distributed predictions."""
import numpy as np
import pytest

from mma_dfer.inference.metrics import confusion_matrix, merge_shards, uar_war
from mma_dfer.inference.metrics import shard
from mma_dfer.training.sampler import GlobalBatchSampler


def test_perfect_and_balanced():
    assert uar_war([0, 1, 2], [0, 1, 2], 3) == (100.0, 100.0)
    assert uar_war([0, 0, 1, 1], [0, 1, 1, 0], 2) == (50.0, 50.0)


def test_class_imbalance_separates_uar_from_war():
    # 8 of class 0 (all right), 2 of class 1 (one right): WAR 9/10, UAR (1 + 1/2) / 2
    y_true = [0] * 8 + [1] * 2
    y_pred = [0] * 8 + [1, 0]
    uar, war = uar_war(y_true, y_pred, 2)
    assert war == pytest.approx(90.0) and uar == pytest.approx(75.0)


def test_class_never_predicted_has_recall_zero():
    uar, war = uar_war([0, 1, 2, 2], [0, 0, 0, 0], 3)
    assert uar == pytest.approx(100 / 3) and war == pytest.approx(25.0)


def test_class_absent_from_the_test_set_is_left_out():
    # 7 classes, only 0 and 3 present: UAR averages their two recalls
    uar, war = uar_war([0, 0, 3, 3], [0, 5, 3, 3], 7)
    assert uar == pytest.approx(75.0) and war == pytest.approx(75.0)


def test_confusion_matrix_counts():
    cm = confusion_matrix([0, 0, 1, 2], [0, 2, 1, 1], 3)
    assert cm.tolist() == [[1, 0, 1], [0, 1, 0], [0, 1, 0]]


def test_padded_distributed_predictions_count_each_clip_once():
    # 5 clips on 2 ranks with a DistributedSampler-style pad: rank 1 repeats clip 0
    rank0 = ([0, 2, 4], np.array([0, 1, 1]))
    rank1 = ([1, 3, 0], np.array([1, 1, 0]))
    idx, pred = merge_shards([rank0, rank1])
    assert idx.tolist() == [0, 1, 2, 3, 4] and pred.tolist() == [0, 1, 1, 1, 1]
    assert uar_war([0, 1, 1, 1, 0], pred, 2) == (75.0, 80.0)


def test_shards_are_equally_long_and_cover_everything_once_after_merging():
    # every rank gets as many items (ZeRO-3 needs as many forward passes on every rank); the
    # padding repeats indices, which merging drops
    for n in (1, 7, 8, 13, 14):
        for world in (1, 2, 3, 4):
            parts = [shard(n, r, world) for r in range(world)]
            assert len({len(p) for p in parts}) == 1 and len(parts[0]) == -(-n // world)
            assert sorted(set(i for p in parts for i in p)) == list(range(n))
            idx, _ = merge_shards([(p, np.array(p)) for p in parts])
            assert idx.tolist() == list(range(n))
    assert [shard(14, r, 3) for r in range(3)] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 13]]


def test_global_batches_do_not_depend_on_world_size():
    def global_batches(world, micro):
        out = []
        samplers = [GlobalBatchSampler(37, 8, micro, r, world, seed=1) for r in range(world)]
        per_rank = [list(s) for s in samplers]
        accum = samplers[0].accum
        for step in range(37 // 8):
            out.append(sorted(i for r in range(world) for b in per_rank[r][step * accum:(step + 1) * accum] for i in b))
        return out

    one = global_batches(1, 8)
    assert one == global_batches(2, 4) == global_batches(2, 2) == global_batches(4, 1)
    assert len(one) == 4 and all(len(b) == 8 for b in one)  # drop_last: 37 clips -> 4 steps


def test_sampler_resumes_mid_epoch():
    full = list(GlobalBatchSampler(40, 8, 4, 0, 1, seed=3))
    s = GlobalBatchSampler(40, 8, 4, 0, 1, seed=3)
    s.set_epoch(0, start_step=2)
    assert list(s) == full[4:]
