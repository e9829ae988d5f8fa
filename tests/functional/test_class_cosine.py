"""column_normalized_matmul: the margin heads' cosine with a hand-written backward and no [D, C] temporary."""
import numpy as np
import paddle
import pytest

from gradcheck import assert_gradcheck
from paddle_losses.functional.class_cosine import column_normalized_matmul
from paddle_losses.functional.normalize import l2_normalize

RNG = np.random.default_rng(0)


def dense(x, w):
    return paddle.matmul(x, l2_normalize(w, "plain", axis=0))


@pytest.mark.parametrize("n,d,c", [(4, 7, 5), (40, 33, 100), (1, 3, 2), (17, 2, 9)])
def test_value_and_both_gradients_equal_autograd_of_the_dense_formula(n, d, c):
    x, w, g = RNG.normal(size=(n, d)), RNG.normal(size=(d, c)), RNG.normal(size=(n, c))
    results = []
    for fn in (dense, column_normalized_matmul):
        a, b = paddle.to_tensor(x, stop_gradient=False), paddle.to_tensor(w, stop_gradient=False)
        out = fn(a, b)
        (out * paddle.to_tensor(g)).sum().backward()
        results.append((out.numpy(), a.grad.numpy(), b.grad.numpy()))
    for ours, ref in zip(results[1], results[0]):
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-13)


def test_weight_gradient_matches_finite_differences():
    x, w = RNG.normal(size=(3, 4)), RNG.normal(size=(4, 5))
    g = paddle.to_tensor(RNG.normal(size=(3, 5)))
    assert_gradcheck(lambda a, b: (column_normalized_matmul(a, b) * g).sum(), [x, w], index=1)


@pytest.mark.parametrize("frozen", ["x", "weight"])
def test_an_input_without_gradient_gets_none(frozen):
    a = paddle.to_tensor(RNG.normal(size=(3, 4)), stop_gradient=frozen == "x")
    b = paddle.to_tensor(RNG.normal(size=(4, 6)), stop_gradient=frozen == "weight")
    column_normalized_matmul(a, b).sum().backward()
    assert (a.grad is None) == (frozen == "x") and (b.grad is None) == (frozen == "weight")


def test_traced_version_gives_the_same_value_and_gradient():
    x, w = RNG.normal(size=(3, 4)).astype("float32"), RNG.normal(size=(4, 6)).astype("float32")
    results = []
    for fn in (column_normalized_matmul, paddle.jit.to_static(column_normalized_matmul, full_graph=True)):
        a, b = paddle.to_tensor(x, stop_gradient=False), paddle.to_tensor(w, stop_gradient=False)
        out = fn(a, b)
        out.sum().backward()
        results.append((out.numpy(), a.grad.numpy(), b.grad.numpy()))
    for ours, ref in zip(results[1], results[0]):
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


def test_backward_leaves_the_returned_cosines_untouched():
    a = paddle.to_tensor(RNG.normal(size=(5, 4)), stop_gradient=False)
    b = paddle.to_tensor(RNG.normal(size=(4, 6)), stop_gradient=False)
    out = column_normalized_matmul(a, b)
    before = out.numpy().copy()
    (out * paddle.to_tensor(RNG.normal(size=(5, 6)))).sum().backward()
    np.testing.assert_array_equal(out.numpy(), before)


@pytest.mark.parametrize("d", [1, 5, 64])
def test_every_row_block_of_the_weight_gets_its_gradient(d):
    # d rows in blocks of n // 2 = 3: a partial last block and a single block both go through the tiled scale
    x, w, g = RNG.normal(size=(6, d)), RNG.normal(size=(d, 7)), RNG.normal(size=(6, 7))
    grads = []
    for fn in (dense, column_normalized_matmul):
        a, b = paddle.to_tensor(x, stop_gradient=False), paddle.to_tensor(w, stop_gradient=False)
        (fn(a, b) * paddle.to_tensor(g)).sum().backward()
        grads.append(b.grad.numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12, atol=1e-13)
