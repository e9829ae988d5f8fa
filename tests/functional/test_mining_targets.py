"""functional.mining.targets: pair masks from class ids, multi-hot labels and positive masks; indices_tuple
validation and PML's pairs -> triplets rule, against NumPy loops."""
import numpy as np
import paddle
import pytest

from paddle_losses.errors import InputError
from paddle_losses.functional.mining import selections as M
from paddle_losses.functional.mining.targets import (IndexPairs, pairs_to_triplets, read_indices_tuple,
                                                     read_pair_labels, selection_pair_masks)

MULTI_HOT = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0], [0, 1, 1]])


def _np_masks(share):
    n = share.shape[0]
    off = ~np.eye(n, dtype=bool)
    return share & off, ~share & off


def _masks(target=None, positive_mask=None, n=None):
    n = n or (len(target) if target is not None else positive_mask.shape[0])
    pos, neg = read_pair_labels(target, n, "T", positive_mask).masks()
    return pos.numpy(), neg.numpy()


@pytest.mark.parametrize("dtype", ["bool", "int64", "float32"])
def test_multi_hot_positives_share_a_label_and_negatives_share_none(dtype):
    pos, neg = _masks(paddle.to_tensor(MULTI_HOT.astype(dtype)))
    share = np.array([[bool((MULTI_HOT[i] & MULTI_HOT[j]).any()) for j in range(6)] for i in range(6)])
    ref_pos, ref_neg = _np_masks(share)
    np.testing.assert_array_equal(pos, ref_pos)
    np.testing.assert_array_equal(neg, ref_neg)
    assert not neg[4, 4] and neg[4].sum() == 5  # a row without labels: negative of every other row


def test_positive_mask_is_taken_as_given_off_the_diagonal_and_may_be_asymmetric():
    mask = np.random.default_rng(0).random((5, 5)) > 0.5
    pos, neg = _masks(positive_mask=paddle.to_tensor(mask))
    ref_pos, ref_neg = _np_masks(mask)
    np.testing.assert_array_equal(pos, ref_pos)
    np.testing.assert_array_equal(neg, ref_neg)


def test_class_ids_column_is_read_as_ids_not_as_multi_hot():
    pos, _ = _masks(paddle.to_tensor([[0], [0], [1]]))
    np.testing.assert_array_equal(pos, [[False, True, False], [True, False, False], [False, False, False]])


@pytest.mark.parametrize("mask,match", [
    (np.ones((4, 4), dtype=bool), r"shape \[N, N\] = \[5, 5\]"),
    (np.ones((5, 5), dtype="int64"), "must be a bool tensor"),
])
def test_bad_positive_mask_is_an_input_error(mask, match):
    with pytest.raises(InputError, match=match):
        read_pair_labels(None, 5, "T", paddle.to_tensor(mask))


def test_multi_hot_with_other_values_or_rows_is_an_input_error():
    with pytest.raises(InputError, match="only 0 and 1"):
        read_pair_labels(paddle.to_tensor(MULTI_HOT * 2), 6, "T")
    with pytest.raises(InputError, match="has 6 rows but the batch has 5"):
        read_pair_labels(paddle.to_tensor(MULTI_HOT), 5, "T")


def _t(v, dtype="int64"):
    return paddle.to_tensor(np.asarray(v, dtype=dtype))


@pytest.mark.parametrize("tup,match", [
    ((_t([0]), _t([1])), "3 .* or 4 .* entries, got 2"),
    ((_t([0, 1]), _t([1, 0]), _t([2])), "equal lengths, got \\[2, 2, 1\\]"),
    ((_t([0]), _t([1]), _t([2, 3]), _t([3])), "len\\(a1\\) == len\\(p\\)"),
    ((_t([0]), _t([5]), _t([2])), "indices_tuple\\[1\\] has indices in \\[5, 5\\], outside the batch \\[0, 5\\)"),
    ((_t([-1]), _t([1]), _t([2])), "outside the batch"),
    ((_t([0.0], "float32"), _t([1]), _t([2])), "integer indices"),
    ((_t([[0]]), _t([[1]]), _t([[2]])), "must be 1-D"),
    ("abc", "must be a tuple"),
])
def test_bad_indices_tuple_is_an_input_error_naming_the_problem(tup, match):
    with pytest.raises(InputError, match=match):
        read_indices_tuple(tup, 5, "T")


def test_indices_tuple_arity_gives_triplets_or_pairs():
    assert isinstance(read_indices_tuple(([0], [1], [2]), 5, "T"), M.Triplets)
    assert isinstance(read_indices_tuple(([0], [1], [0, 1], [2, 3]), 5, "T"), IndexPairs)


def test_pairs_join_on_their_anchor_into_triplets_in_pml_order():
    a1, p, a2, n = [0, 0, 1, 3], [1, 2, 0, 4], [1, 0, 0, 2], [3, 3, 4, 0]
    ref = [(a1[i], p[i], n[j]) for i in range(4) for j in range(4) if a1[i] == a2[j]]
    t = pairs_to_triplets(_t(a1), _t(p), _t(a2), _t(n))
    got = list(zip(*(v.numpy().tolist() for v in t.indices())))
    assert got == ref


def test_selection_pair_masks_collapse_duplicate_pairs():
    pos, neg = selection_pair_masks(M.Triplets(_t([0, 0]), _t([1, 1]), _t([2, 3])), 4)
    assert pos.numpy().sum() == 1 and pos.numpy()[0, 1]
    np.testing.assert_array_equal(np.nonzero(neg.numpy()), [[0, 0], [2, 3]])
