"""Float64 finite-difference gradient check for functions of Paddle tensors."""
import numpy as np
import paddle


def numeric_grad(fn, arrays, index, eps=1e-6):
    """Central-difference gradient of scalar ``fn(*tensors)`` w.r.t. ``arrays[index]`` (float64 numpy)."""
    base = [np.array(a, dtype=np.float64) for a in arrays]
    x = base[index]
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        plus = float(fn(*[paddle.to_tensor(a) for a in base]))
        x[i] = old - eps
        minus = float(fn(*[paddle.to_tensor(a) for a in base]))
        x[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def analytic_grad(fn, arrays, index):
    ts = [paddle.to_tensor(np.array(a, dtype=np.float64)) for a in arrays]
    ts[index].stop_gradient = False
    out = fn(*ts)
    out.backward()
    return ts[index].grad.numpy()


def assert_gradcheck(fn, arrays, index=0, eps=1e-6, rtol=1e-5, atol=1e-7):
    """Assert autograd and finite differences agree for ``fn`` at ``arrays`` (w.r.t. ``arrays[index]``).

    Pick inputs away from kinks (hinges, max/min ties): finite differences are meaningless there.
    """
    num = numeric_grad(fn, arrays, index, eps)
    ana = analytic_grad(fn, arrays, index)
    np.testing.assert_allclose(ana, num, rtol=rtol, atol=atol)
