"""CrossBatchMemory: PaddleClas's write policy, explicit fill state, persistence, bad input."""
import numpy as np
import paddle
import pytest

from golden import assert_close, case, tensor
from paddle_losses.errors import InputError
from paddle_losses.memory import CrossBatchMemory


def _enqueue(memory, feats, targets):
    memory.enqueue_dequeue(paddle.to_tensor(np.asarray(feats, dtype="float32")),
                           paddle.to_tensor(np.asarray(targets, dtype="int64")))


def test_golden_bookkeeping_replays_write_positions_and_reads():
    c = case("metric", "CrossBatchMemory__bookkeeping")
    memory = CrossBatchMemory(**c.meta["params"])
    for s in range(c.meta["steps"]):
        memory.enqueue_dequeue(tensor(c[f"enq_feats__s{s}"]), tensor(c[f"enq_targets__s{s}"]))
        feats, targets = memory.get()
        assert_close(feats, c[f"get_feats__s{s}"], f"step {s} get feats")
        assert_close(targets, c[f"get_targets__s{s}"], f"step {s} get targets")
        assert_close(memory.targets, c[f"state__targets__s{s}"], f"step {s} targets buffer")
        assert int(memory.ptr) == int(c[f"state__ptr__s{s}"]), f"step {s} ptr"


def test_overflow_writes_the_last_slots_and_resets_the_pointer():
    memory = CrossBatchMemory(5, 1)
    for t in ([1, 2], [3, 4], [5, 6]):
        _enqueue(memory, np.zeros([2, 1]), t)
    np.testing.assert_array_equal(memory.targets.numpy(), [1, 2, 3, 5, 6])
    assert int(memory.ptr) == 0 and int(memory.filled) == 5


def test_label_zero_in_last_slot_still_counts_as_full():
    # PaddleClas tests targets[-1] != 0: after this wrap its get() returns 0 rows.
    memory = CrossBatchMemory(4, 2)
    _enqueue(memory, np.ones([4, 2]), [1, 1, 0, 0])
    _enqueue(memory, 2 * np.ones([4, 2]), [2, 2, 0, 0])
    feats, targets = memory.get()
    assert feats.shape == [4, 2]
    np.testing.assert_array_equal(targets.numpy(), [2, 2, 0, 0])
    assert memory._is_full
    assert memory.valid_slots().numpy().all()


def test_partial_memory_exposes_only_written_slots():
    memory = CrossBatchMemory(6, 2)
    _enqueue(memory, np.ones([2, 2]), [0, 0])
    np.testing.assert_array_equal(memory.valid_slots().numpy(), [True, True, False, False, False, False])
    assert memory.get()[0].shape == [2, 2]
    assert not memory._is_full


def test_pointer_and_fill_state_survive_state_dict_round_trip():
    memory = CrossBatchMemory(5, 2)
    _enqueue(memory, np.ones([2, 2]), [3, 0])
    state = memory.state_dict()
    assert set(state) == {"feats", "targets", "ptr", "filled"}
    fresh = CrossBatchMemory(5, 2)
    fresh.set_state_dict(state)
    _enqueue(fresh, 2 * np.ones([2, 2]), [4, 5])
    _enqueue(memory, 2 * np.ones([2, 2]), [4, 5])
    for name in ("feats", "targets", "ptr", "filled"):
        np.testing.assert_array_equal(getattr(fresh, name).numpy(), getattr(memory, name).numpy(), err_msg=name)
    np.testing.assert_array_equal(fresh.targets.numpy(), [3, 0, 4, 5, 0])


def test_float64_batch_is_stored_as_float32_and_detached():
    memory = CrossBatchMemory(3, 2)
    x = paddle.to_tensor(np.ones([2, 2]), dtype="float64", stop_gradient=False)
    memory.enqueue_dequeue(x, paddle.to_tensor([1, 2], dtype="int32"))
    assert memory.feats.dtype == paddle.float32 and memory.feats.stop_gradient
    assert memory.targets.dtype == paddle.int64


def test_wrong_feature_size_is_an_input_error():
    memory = CrossBatchMemory(4, 3)
    with pytest.raises(InputError, match="3-d features"):
        _enqueue(memory, np.ones([2, 5]), [1, 2])


def test_batch_larger_than_memory_is_an_input_error():
    memory = CrossBatchMemory(2, 1)
    with pytest.raises(InputError, match="size 2 cannot take a batch of 3"):
        _enqueue(memory, np.ones([3, 1]), [1, 2, 3])


def test_label_count_mismatch_is_an_input_error():
    memory = CrossBatchMemory(4, 1)
    with pytest.raises(InputError, match="3 labels"):
        _enqueue(memory, np.ones([2, 1]), [1, 2, 3])


def test_bad_sizes_are_value_errors_and_forward_is_not_callable():
    with pytest.raises(ValueError, match="size must be >= 1"):
        CrossBatchMemory(0, 2)
    with pytest.raises(ValueError, match="embedding_size"):
        CrossBatchMemory(2, 0)
    with pytest.raises(NotImplementedError):
        CrossBatchMemory(2, 2)(paddle.ones([1, 2]))
