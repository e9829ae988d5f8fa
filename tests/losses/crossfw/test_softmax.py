"""NTXentLoss, PMLSupConLoss, PMLNPairsLoss: float64 NumPy references, gradients, edge batches, validation."""
import numpy as np
import paddle
import pytest

import paddle_losses as pl
from golden import tensor
from gradcheck import assert_gradcheck
from losses.crossfw import np_reference as R
from paddle_losses.losses.crossfw.softmax import PMLNPairsLoss, NTXentLoss, PMLSupConLoss

LABELS = {"pk": [0, 0, 0, 1, 1, 1, 2, 2, 2], "unbalanced": [1, 0, 2, 0, 0, 1, 0, 2, 1, 0],
          "singleton": [0, 1, 0, 2, 1, 0, 1, 3]}
CASES = [(NTXentLoss, {"temperature": 0.5}, lambda x, y: R.ntxent(x, y, 0.5)),
         (PMLSupConLoss, {}, R.supcon), (PMLNPairsLoss, {}, R.npairs)]

KEEP_ALIVE = []


def _data(kind, seed=0, d=5):
    labels = np.array(LABELS[kind])
    return np.random.default_rng(seed).normal(size=(len(labels), d)), labels


def _run(loss, x, y):
    return loss({"features": x}, y)[type(loss).__name__]


@pytest.mark.parametrize("kind", list(LABELS))
@pytest.mark.parametrize("cls,kw,ref", CASES, ids=[c[0].__name__ for c in CASES])
def test_matches_numpy_float64(cls, kw, ref, kind):
    x, y = _data(kind)
    np.testing.assert_allclose(float(_run(cls(**kw), tensor(x), paddle.to_tensor(y))), ref(x, y), rtol=1e-10)


@pytest.mark.parametrize("cls,kw", [(NTXentLoss, {"temperature": 0.5}), (PMLSupConLoss, {"temperature": 0.5}),
                                    (PMLNPairsLoss, {})])
def test_finite_difference_gradient(cls, kw):
    x, y = _data("unbalanced", 1, d=4)
    loss, labels = cls(**kw), paddle.to_tensor(y)
    assert_gradcheck(lambda t: _run(loss, t, labels), [x])


@pytest.mark.parametrize("cls", [NTXentLoss, PMLSupConLoss, PMLNPairsLoss])
@pytest.mark.parametrize("labels", [[3, 3, 3, 3], [0, 1, 2, 3]])
def test_batches_without_pairs_or_negatives_are_finite(cls, labels):
    x = tensor(np.random.default_rng(2).normal(size=(4, 3)), grad=True)
    out = _run(cls(), x, paddle.to_tensor(labels))
    out.backward()
    expected = 0.0
    if cls is PMLSupConLoss and labels == [3, 3, 3, 3]:
        # every other sample is a positive and in the denominator: a well-defined, non-zero value
        expected = R.supcon(x.numpy(), np.array(labels))
    # NPairs on one class: one pair and one column, so CE over a single logit = 0
    assert float(out) == pytest.approx(expected, abs=1e-12)
    assert np.all(np.isfinite(x.grad.numpy()))


def test_npairs_takes_the_two_smallest_indices_of_each_label():
    x, y = _data("unbalanced", 3)
    # moving any sample other than the first two of its label must not change the loss
    x2 = x.copy()
    x2[8] += 5.0  # label 1: indices 0, 5, 8 -> 8 is unused
    a = float(_run(PMLNPairsLoss(), tensor(x), paddle.to_tensor(y)))
    b = float(_run(PMLNPairsLoss(), tensor(x2), paddle.to_tensor(y)))
    assert a == pytest.approx(b, rel=1e-12)


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        PMLSupConLoss(temperature=-1.0)


def test_softmax_loss_runs_under_to_static():
    loss = PMLNPairsLoss()
    x, y = _data("unbalanced", 4)
    xt, yt = tensor(x.astype("float32")), paddle.to_tensor(y)

    def softmax_compute(f, t):
        return _run(loss, f, t)

    # SOT caches translations by code object; keeping the function alive stops a later test's
    # function from reusing its id and hitting the stale cache entry
    KEEP_ALIVE.append(softmax_compute)

    static = paddle.jit.to_static(softmax_compute)
    np.testing.assert_allclose(float(static(xt, yt)), float(softmax_compute(xt, yt)),
                               rtol=1e-6)


@pytest.mark.parametrize("cls", [NTXentLoss, PMLSupConLoss, PMLNPairsLoss])
def test_describable(cls):
    assert cls.output_keys == (cls.__name__,) and cls.input_keys and "Reads" in cls.__doc__
    assert pl.get_loss(cls.__name__) is cls
