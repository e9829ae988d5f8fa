"""SoftTargetCrossEntropy and CCSSLCELoss: golden parity, NumPy references, gradients, fixed crashes, input
validation."""
import numpy as np
import paddle
import pytest

import paddle_losses as pl
from golden import case
from gradcheck import assert_gradcheck
from losses.other_case_replay import replay
from paddle_losses.errors import InputError
from paddle_losses.losses.soft_ce import CCSSLCELoss, SoftTargetCrossEntropy


@pytest.mark.parametrize("name", ["SoftTargetCrossEntropy", "CCSSLCELoss"])
def test_golden_replay_outputs_and_gradients(name):
    c = case("other", name)
    replay(c, pl.get_loss(c.meta["class"])(**c.params))


def _log_softmax(x):
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _soft_inputs(seed, n=6, c=5):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 2, (n, c))
    target = rng.dirichlet(np.ones(c), size=n)
    return x, target


# ---------------------------------------------------------------- SoftTargetCrossEntropy

def test_soft_target_ce_matches_float64_numpy_reference():
    x, target = _soft_inputs(0)
    got = SoftTargetCrossEntropy()(paddle.to_tensor(x), paddle.to_tensor(target))["SoftTargetCELoss"]
    np.testing.assert_allclose(got.numpy(), (-target * _log_softmax(x)).sum(1).mean(), rtol=1e-12)


def test_soft_target_ce_uses_target_as_given_without_softmax():
    x, _ = _soft_inputs(1)
    raw = np.zeros_like(x)
    raw[:, 0] = 3.0  # not a distribution: a softmaxing loss would flatten it
    got = SoftTargetCrossEntropy()(paddle.to_tensor(x), paddle.to_tensor(raw))["SoftTargetCELoss"]
    np.testing.assert_allclose(got.numpy(), (-3.0 * _log_softmax(x)[:, 0]).mean(), rtol=1e-12)


@pytest.mark.parametrize("index", [0, 1])
def test_soft_target_ce_gradient_reaches_logits_and_target(index):
    x, target = _soft_inputs(2)
    loss = SoftTargetCrossEntropy()
    assert_gradcheck(lambda a, b: loss(a, b)["SoftTargetCELoss"], [x, target], index=index)


def test_soft_target_ce_accepts_model_output_dict():
    x, target = _soft_inputs(3)
    bare = SoftTargetCrossEntropy()(paddle.to_tensor(x), paddle.to_tensor(target))["SoftTargetCELoss"]
    wrapped = SoftTargetCrossEntropy()({"logits": paddle.to_tensor(x)}, paddle.to_tensor(target))
    np.testing.assert_allclose(wrapped["SoftTargetCELoss"].numpy(), bare.numpy())


def test_soft_target_ce_rejects_class_ids_and_wrong_shape():
    x = paddle.randn([4, 3])
    with pytest.raises(InputError, match="use CELoss"):
        SoftTargetCrossEntropy()(x, paddle.to_tensor([[0], [1], [2], [0]]))
    with pytest.raises(InputError, match=r"logits' shape \[4, 3\]"):
        SoftTargetCrossEntropy()(x, paddle.ones([4, 4]) / 4)
    with pytest.raises(InputError, match="NaN"):
        SoftTargetCrossEntropy()(x, paddle.full([4, 3], float("nan")))


def test_soft_target_ce_str_is_class_name():
    assert str(SoftTargetCrossEntropy()) == "SoftTargetCrossEntropy"


# ---------------------------------------------------------------- CCSSLCELoss

def _ccssl_batch(seed, n=7, c=5, column=False):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, c))
    ids = rng.integers(0, c, n).astype(np.int64)
    mask = (rng.uniform(size=n) > 0.4).astype(np.float64)
    return logits, (ids.reshape(-1, 1) if column else ids), mask


def _np_ccssl(logits, ids, mask):
    ids = ids.reshape(-1)
    lsm = _log_softmax(logits)
    per = np.where(ids == -100, 0.0, -lsm[np.arange(len(ids)), np.clip(ids, 0, None)])
    return (per * mask).mean()


def _ccssl(loss, logits, ids, mask):
    batch = {"p_targets_u_w": paddle.to_tensor(ids), "logits_s1": logits, "mask": mask}
    return loss(None, batch)["CCSSLCELoss"]


def test_ccssl_matches_float64_numpy_reference_and_divides_by_all_rows():
    logits, ids, mask = _ccssl_batch(0)
    ids[2] = -100
    got = _ccssl(CCSSLCELoss(), paddle.to_tensor(logits), ids, paddle.to_tensor(mask))
    np.testing.assert_allclose(got.numpy(), _np_ccssl(logits, ids, mask), rtol=1e-12)


def test_ccssl_column_pseudo_labels_give_the_per_row_value():
    # PaddleClas broadcasts [N, 1] losses against the [N] mask into [N, N]; we flatten.
    logits, ids, mask = _ccssl_batch(1, column=True)
    got = _ccssl(CCSSLCELoss(), paddle.to_tensor(logits), ids, paddle.to_tensor(mask))
    np.testing.assert_allclose(got.numpy(), _np_ccssl(logits, ids, mask), rtol=1e-12)
    flat = _ccssl(CCSSLCELoss(), paddle.to_tensor(logits), ids.reshape(-1), paddle.to_tensor(mask))
    np.testing.assert_allclose(got.numpy(), flat.numpy(), rtol=1e-12)


@pytest.mark.parametrize("index", [0, 1])
def test_ccssl_gradient_reaches_strong_logits_and_mask(index):
    logits, ids, mask = _ccssl_batch(2)
    mask = mask * 0.7 + 0.1
    loss = CCSSLCELoss()
    assert_gradcheck(lambda z, m: _ccssl(loss, z, ids, m), [logits, mask], index=index)


def test_ccssl_ignores_the_first_argument_and_constructor_kwargs():
    logits, ids, mask = _ccssl_batch(3)
    batch = {"p_targets_u_w": paddle.to_tensor(ids), "logits_s1": paddle.to_tensor(logits),
             "mask": paddle.to_tensor(mask), "logits_w": paddle.to_tensor(logits)}
    a = CCSSLCELoss(temperature=0.7, anything="x")(None, batch)["CCSSLCELoss"]
    b = CCSSLCELoss()(paddle.randn([7, 2, 4]), batch)["CCSSLCELoss"]
    np.testing.assert_allclose(a.numpy(), b.numpy())


def test_ccssl_batch_errors_name_the_problem():
    logits, ids, mask = _ccssl_batch(4)
    good = {"p_targets_u_w": paddle.to_tensor(ids), "logits_s1": paddle.to_tensor(logits),
            "mask": paddle.to_tensor(mask)}
    with pytest.raises(InputError, match="logits_s1"):
        CCSSLCELoss()(None, {k: v for k, v in good.items() if k != "logits_s1"})
    with pytest.raises(InputError, match="must hold integer class ids"):
        CCSSLCELoss()(None, dict(good, p_targets_u_w=paddle.to_tensor(ids.astype(np.float32))))
    with pytest.raises(InputError, match="mask"):
        CCSSLCELoss()(None, dict(good, mask=paddle.ones([3])))
    with pytest.raises(InputError, match="outside"):
        CCSSLCELoss()(None, dict(good, p_targets_u_w=paddle.to_tensor(ids + 10)))
    with pytest.raises(InputError, match="dict"):
        CCSSLCELoss()(None, paddle.to_tensor(ids))


def test_built_from_config():
    loss = pl.build_loss([{"CCSSLCELoss": {"weight": 1.0}}, {"SoftTargetCrossEntropy": {"weight": 1.0}}])
    assert [type(f).__name__ for f in loss.loss_func] == ["CCSSLCELoss", "SoftTargetCrossEntropy"]


def test_soft_target_ce_runs_under_to_static():
    c = case("other", "SoftTargetCrossEntropy")
    layer = SoftTargetCrossEntropy()

    def soft_ce(x, t):
        return layer(x, t)["SoftTargetCELoss"]

    x = paddle.to_tensor(c["arg.x"], stop_gradient=False)
    out = paddle.jit.to_static(soft_ce)(x, paddle.to_tensor(c["arg.target"]))
    out.backward()
    np.testing.assert_allclose(out.numpy(), c["out.SoftTargetCELoss"], rtol=1e-5)
    np.testing.assert_allclose(x.grad.numpy(), c["grad.x"], rtol=1e-5, atol=1e-5)
