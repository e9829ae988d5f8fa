"""``gather: true`` / ``paddle_losses.distributed.gathered`` on 2 and 4 gloo processes against one process on
the global batch: loss values, feature and parameter gradients (after DataParallel averaging), cross-batch
memories and weights after 3 SGD steps, and the error every rank raises when the ranks disagree."""
import json

import numpy as np
import paddle.distributed as dist
import pytest

from distributed_cases import both_cases, class_parallel_heads_case, gathered_losses_case

TOL = dict(rtol=1e-5, atol=1e-5)


def _spawn(case, tmp_path, sizes):
    dist.spawn(case, args=(str(tmp_path), sizes), nprocs=len(sizes), backend="gloo")
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(len(sizes))]


def _reference(case, tmp_path, sizes):
    ref_dir = tmp_path / "single"
    ref_dir.mkdir()
    case(str(ref_dir), [sum(sizes)])
    return json.loads((ref_dir / "rank0.json").read_text())


def _check_against_single_process(ranks, ref):
    world = len(ranks)
    for rec in ranks:
        lo, hi = rec["rows"]
        assert rec["world"] == world
        for step in range(3):
            np.testing.assert_allclose(rec["loss"][step], ref["loss"][step], **TOL)
            # the gather's backward scales a rank's own rows by W ...
            np.testing.assert_allclose(np.array(rec["x_grad"][step]) / world,
                                       np.array(ref["x_grad"][step])[lo:hi], **TOL)
            # ... so that DataParallel's average is the single-process gradient
            for key in ("w_grad", "b_grad", "c_grad"):
                np.testing.assert_allclose(rec[key][step], ref[key][step], **TOL)
        for key in ("weight", "centers", "xbm_feats"):
            np.testing.assert_allclose(rec[key], ref[key], **TOL)
        assert rec["xbm_targets"] == ref["xbm_targets"] and rec["xbm_ptr"] == ref["xbm_ptr"]


def test_gathered_losses_on_two_ranks_with_unequal_batches_equal_one_process_on_the_global_batch(tmp_path):
    sizes = [6, 4]
    ranks = _spawn(gathered_losses_case, tmp_path, sizes)
    _check_against_single_process(ranks, _reference(gathered_losses_case, tmp_path, sizes))
    # every rank raises, naming the mismatch (and nothing hangs: the spawn returned)
    for rec in ranks:
        errs = rec["errors"]
        assert "feature size of 'features'" in errs["feature size"] and "rank 1 has [2, 5]" in errs["feature size"]
        assert "dtype of 'features'" in errs["dtype"] and "float64" in errs["dtype"]
        assert "different inputs" in errs["keys"]


def test_gathered_is_the_plain_loss_in_one_process():
    import paddle

    from paddle_losses import get_loss
    from paddle_losses.distributed import gathered

    x = paddle.to_tensor(np.random.RandomState(1).randn(8, 4).astype("float32"))
    y = paddle.to_tensor(np.array([0, 0, 1, 1, 2, 2, 0, 1], "int64"))
    plain = get_loss("TripletLossV2")(margin=0.3)
    wrapped = gathered(get_loss("TripletLossV2")(margin=0.3))
    assert float(wrapped({"features": x}, y)["TripletLossV2"]) == float(plain({"features": x}, y)["TripletLossV2"])


def _check_heads_against_single_process(ranks, ref, out_dir=None):
    from distributed_cases import HEADS

    world = len(ranks)
    for rec in ranks:
        lo, hi = rec["rows"]
        for name, _, _, classes in HEADS:
            got, want = rec[name], ref[name]
            start, stop = got["shard"]
            for step in range(3):
                np.testing.assert_allclose(got["loss"][step], want["loss"][step], err_msg=name, **TOL)
                np.testing.assert_allclose(np.array(got["x_grad"][step]) / world,
                                           np.array(want["x_grad"][step])[lo:hi], err_msg=name, **TOL)
                np.testing.assert_allclose(got["w_grad"][step], want["w_grad"][step], err_msg=name, **TOL)
            # after 3 SGD steps the shard equals the same columns of the single-process weight
            np.testing.assert_allclose(got["head"][0], np.array(want["head"][0])[:, start:stop], err_msg=name, **TOL)
            if name == "FC":
                np.testing.assert_allclose(got["head"][1], np.array(want["head"][1])[start:stop], **TOL)
            if name == "AdaMargin":
                assert got["batch_mean"] == pytest.approx(want["batch_mean"], rel=1e-5)
                assert got["batch_std"] == pytest.approx(want["batch_std"], rel=1e-5)
            np.testing.assert_allclose(got["backbone"], want["backbone"], err_msg=name, **TOL)
    # the shards tile the classes in rank order, C % W ranks first holding one more
    for name, _, _, classes in HEADS:
        bounds = [rec[name]["shard"] for rec in ranks]
        assert bounds[0][0] == 0 and bounds[-1][1] == classes
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        widths = [b - a for a, b in bounds]
        assert widths == sorted(widths, reverse=True) and max(widths) - min(widths) <= 1
    for rec in ranks:
        assert "class_num" in rec["class_count_error"] and "rank 1 has [8, 4]" in rec["class_count_error"]
    if out_dir is not None:  # the merged shards are the single-process weights after 3 steps
        import paddle

        from paddle_losses.heads.shards import merge_shards
        for name, _, _, _ in HEADS:
            merged = paddle.load(merge_shards(str(out_dir / name)))
            key = {"FC": "head.fc.weight", "AdaMargin": "head.kernel"}.get(name, "head.weight")
            np.testing.assert_allclose(merged[key].numpy(), ref[name]["head"][0], err_msg=name, **TOL)
            np.testing.assert_allclose(merged["backbone.weight"].numpy(), ref[name]["backbone"], **TOL)


def test_class_parallel_heads_on_two_ranks_equal_one_process_on_the_global_batch(tmp_path):
    sizes = [6, 4]
    ranks = _spawn(class_parallel_heads_case, tmp_path, sizes)
    _check_heads_against_single_process(ranks, _reference(class_parallel_heads_case, tmp_path, sizes), tmp_path)


def test_gathered_losses_and_class_parallel_heads_on_four_ranks_equal_one_process(tmp_path):
    sizes = [3, 3, 2, 4]  # 7 classes: shards 2, 2, 2, 1; 8 classes: 2 each
    dist.spawn(both_cases, args=(str(tmp_path), sizes), nprocs=4, backend="gloo")
    for sub, check in (("losses", _check_against_single_process), ("heads", _check_heads_against_single_process)):
        ranks = [json.loads((tmp_path / sub / f"rank{r}.json").read_text()) for r in range(4)]
        case = gathered_losses_case if sub == "losses" else class_parallel_heads_case
        (tmp_path / sub / "ref").mkdir()
        check(ranks, _reference(case, tmp_path / sub / "ref", sizes), *([tmp_path / sub] if sub == "heads" else []))


def test_trainer_with_a_class_parallel_head_writes_shards_and_refuses_to_resume(tmp_path):
    from distributed_cases import class_parallel_trainer_case

    ranks = _spawn(class_parallel_trainer_case, tmp_path, [1, 1])
    assert [r["shard"] for r in ranks] == [[0, 3], [3, 5]]  # quick start: 5 classes on 2 ranks
    assert [r["width"] for r in ranks] == [3, 2]
    assert {"latest.shard0-of-2.pdparams", "latest.shard1-of-2.pdparams", "latest.pdparams"} <= set(ranks[0]["files"])
    for rec in ranks:
        assert rec["resume"].startswith("Global.checkpoints: resuming a run with class_parallel heads")
