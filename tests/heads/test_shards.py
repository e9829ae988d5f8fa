"""Shard files of class-parallel heads: split a single-process checkpoint for W ranks, merge them back,
and the merge-heads command's errors."""
import numpy as np
import paddle
import pytest

from paddle_losses.cli import main
from paddle_losses.errors import ConfigError
from paddle_losses.heads.shards import merge_shards, shard_path, split_checkpoint


@pytest.mark.parametrize("world", [2, 3, 4])
def test_split_then_merge_gives_back_the_single_process_weights(tmp_path, world):
    rng = np.random.RandomState(0)
    state = {"head.fc.weight": paddle.to_tensor(rng.randn(5, 10).astype("float32")),
             "head.fc.bias": paddle.to_tensor(rng.randn(10).astype("float32")),
             "backbone.weight": paddle.to_tensor(rng.randn(3, 5).astype("float32"))}
    prefix = str(tmp_path / "latest")
    paddle.save(state, prefix + ".pdparams")
    paths = split_checkpoint(prefix, world, {"head.fc.weight": 1, "head.fc.bias": 0})
    widths = [paddle.load(p)["params"]["head.fc.weight"].shape[1] for p in paths]
    # 10 classes: C // W each, the first C % W ranks one more
    assert widths == [10 // world + (1 if r < 10 % world else 0) for r in range(world)]
    merged = paddle.load(merge_shards(prefix))
    for key, value in state.items():
        np.testing.assert_array_equal(merged[key].numpy(), value.numpy())


def test_merge_names_the_missing_rank_and_the_cli_prints_one_error_line(tmp_path, capsys):
    prefix = str(tmp_path / "latest")
    paddle.save({"head.weight": paddle.ones([2, 6])}, prefix + ".pdparams")
    paths = split_checkpoint(prefix, 3, {"head.weight": 1})
    (tmp_path / paths[1].rsplit("/", 1)[1]).unlink()
    with pytest.raises(ConfigError, match=r"ranks \[1\] of 3 are missing"):
        merge_shards(prefix)
    assert main(["merge-heads", prefix]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: merge-heads: the shards of ranks [1] of 3") and "Traceback" not in err
    assert shard_path("p", 0, 2) == "p.shard0-of-2.pdparams"
