"""CenterLoss: golden parity, NumPy reference with the (C-1)·1e-12 clip quirk, gradients to features and
centers, checkpoint names and round trip, the opt-in paper center update, and input validation."""
import numpy as np
import paddle
import pytest

import paddle_losses as pl
from golden import assert_close, cases, tensor
from gradcheck import assert_gradcheck, numeric_grad
from paddle_losses.errors import InputError
from paddle_losses.losses.center import CenterLoss

GOLDEN = cases("metric", "CenterLoss__*.npz")
RNG = np.random.default_rng(11)


@pytest.fixture
def float64_default():
    old = paddle.get_default_dtype()
    paddle.set_default_dtype("float64")
    yield
    paddle.set_default_dtype(old)


def np_center_loss(x, centers, y):
    d = (x[:, None, :] - centers[None, :, :]) ** 2
    masked = d.sum(-1) * (y[:, None] == np.arange(len(centers))[None, :])
    return np.clip(masked, 1e-12, 1e12).sum() / len(x)


@pytest.mark.parametrize("golden_case", GOLDEN, ids=lambda c: c.name)
def test_golden_outputs_and_gradients_to_features_and_centers(golden_case):
    c = golden_case
    loss = CenterLoss(**c.params)
    loss.centers.set_value(c["init__centers"])
    x = tensor(c["input__features"], grad=True)
    out = loss({"features": x}, tensor(c["label"]))
    assert list(out) == ["CenterLoss"]
    assert_close(out["CenterLoss"], c["out__CenterLoss"], "CenterLoss")
    out["CenterLoss"].backward()
    assert_close(x.grad, c["grad__features"], "grad features")
    assert_close(loss.centers.grad, c["grad__centers"], "grad centers")


def test_golden_case_count():
    assert len(GOLDEN) == 2


def test_matches_numpy_reference(float64_default):
    x, y = RNG.normal(size=(7, 5)), np.array([0, 2, 2, 1, 3, 0, 2])
    loss = CenterLoss(num_classes=4, feat_dim=5)
    centers = loss.centers.numpy()
    out = float(loss({"features": paddle.to_tensor(x)}, paddle.to_tensor(y))["CenterLoss"])
    np.testing.assert_allclose(out, np_center_loss(x, centers, y), rtol=1e-10)


def test_clip_after_mask_adds_c_minus_one_times_1e12(float64_default):
    loss = CenterLoss(num_classes=6, feat_dim=3)
    y = np.array([0, 4, 5])
    x = loss.centers.numpy()[y]  # every true distance is 0 -> clipped to 1e-12 as well
    out = float(loss({"features": paddle.to_tensor(x)}, paddle.to_tensor(y))["CenterLoss"])
    # N·1e-12 from the zero true distances, N·(C−1)·1e-12 from the masked zeros, divided by N.
    np.testing.assert_allclose(out, 6 * 1e-12, rtol=1e-6)


def test_feature_gradient_matches_finite_differences(float64_default):
    loss = CenterLoss(num_classes=4, feat_dim=5, feature_from="backbone")
    y = paddle.to_tensor(np.array([0, 2, 2, 1, 3, 0]))
    assert_gradcheck(lambda x: loss({"backbone": x}, y)["CenterLoss"], [RNG.normal(size=(6, 5))])


def test_center_gradient_matches_finite_differences_and_formula(float64_default):
    x, y = RNG.normal(size=(6, 5)), np.array([0, 2, 2, 1, 3, 0])
    loss = CenterLoss(num_classes=4, feat_dim=5)
    c0 = loss.centers.numpy().copy()

    def value(c):
        loss.centers.set_value(c.numpy())
        return loss({"features": paddle.to_tensor(x)}, paddle.to_tensor(y))["CenterLoss"]

    numeric = numeric_grad(value, [c0], 0)
    loss.centers.set_value(c0)
    loss.centers.clear_gradient()
    loss({"features": paddle.to_tensor(x)}, paddle.to_tensor(y))["CenterLoss"].backward()
    analytic = loss.centers.grad.numpy()
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)
    formula = np.stack([2 / 6 * (c0[j] - x[y == j]).sum(0) for j in range(4)])
    np.testing.assert_allclose(analytic, formula, rtol=1e-10)


def test_centers_come_from_paddle_randn():
    paddle.seed(123)
    loss = CenterLoss(num_classes=3, feat_dim=4)
    paddle.seed(123)
    np.testing.assert_array_equal(loss.centers.numpy(), paddle.randn([3, 4]).numpy())


def test_centers_are_checkpointed_under_paddleclas_names(tmp_path):
    combined = pl.build_loss([{"CELoss": {"weight": 1.0}},
                              {"CenterLoss": {"weight": 5e-4, "num_classes": 3, "feat_dim": 4}}])
    assert "loss_func.1.centers" in combined.state_dict()
    assert [p.name for p in combined.parameters()] == [combined.loss_func[1].centers.name]
    path = str(tmp_path / "loss.pdparams")
    paddle.save(combined.state_dict(), path)
    fresh = pl.build_loss([{"CELoss": {"weight": 1.0}},
                           {"CenterLoss": {"weight": 5e-4, "num_classes": 3, "feat_dim": 4}}])
    assert not np.array_equal(fresh.loss_func[1].centers.numpy(), combined.loss_func[1].centers.numpy())
    fresh.set_state_dict(paddle.load(path))
    np.testing.assert_array_equal(fresh.loss_func[1].centers.numpy(), combined.loss_func[1].centers.numpy())


def test_float64_features_are_accepted():
    loss = CenterLoss(num_classes=3, feat_dim=4)
    x = RNG.normal(size=(5, 4))
    y = np.array([0, 1, 2, 1, 0])
    out = loss({"features": paddle.to_tensor(x)}, paddle.to_tensor(y))["CenterLoss"]
    assert out.dtype == paddle.float64
    np.testing.assert_allclose(float(out), np_center_loss(x, loss.centers.numpy().astype("float64"), y),
                               rtol=1e-6)


# ---------------------------------------------------------------- opt-in center update (Wen et al. 2016)

def test_default_forward_leaves_centers_alone():
    loss = CenterLoss(num_classes=3, feat_dim=4)
    before = loss.centers.numpy().copy()
    loss({"features": paddle.randn([6, 4])}, paddle.to_tensor([0, 1, 2, 0, 1, 2]))
    np.testing.assert_array_equal(loss.centers.numpy(), before)
    assert not loss.centers.stop_gradient


def test_center_update_follows_paper_rule(float64_default):
    alpha = 0.3
    loss = CenterLoss(num_classes=4, feat_dim=3, center_update=True, alpha=alpha)
    x, y = RNG.normal(size=(7, 3)), np.array([0, 2, 2, 1, 0, 0, 2])  # class 3 absent
    c = loss.centers.numpy().copy()
    expected_loss = np_center_loss(x, c, y)
    expected = c.copy()
    for j in range(4):
        members = x[y == j]
        delta = (c[j] - members).sum(0) / (1 + len(members))
        expected[j] = c[j] - alpha * delta
    out = loss({"features": paddle.to_tensor(x)}, paddle.to_tensor(y))["CenterLoss"]
    np.testing.assert_allclose(float(out), expected_loss, rtol=1e-10)  # computed with the old centers
    np.testing.assert_allclose(loss.centers.numpy(), expected, rtol=1e-10)
    np.testing.assert_array_equal(loss.centers.numpy()[3], c[3])


def test_center_update_moves_centers_to_class_means_without_optimizer():
    loss = CenterLoss(num_classes=3, feat_dim=2, center_update=True, alpha=0.5)
    means = np.array([[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]], dtype="float32")
    y = np.repeat(np.arange(3), 4)
    rng = np.random.default_rng(3)
    start = np.abs(loss.centers.numpy() - means).max()
    values = []
    for _ in range(30):
        x = (means[y] + 0.1 * rng.normal(size=(12, 2))).astype("float32")
        feats = paddle.to_tensor(x, stop_gradient=False)
        out = loss({"features": feats}, paddle.to_tensor(y))["CenterLoss"]
        out.backward()
        values.append(float(out))
        assert loss.centers.grad is None  # no gradient reaches the centers; nothing for an optimizer
        assert feats.grad is not None
    assert np.abs(loss.centers.numpy() - means).max() < 0.1 < start
    assert values[-1] < 0.1 * values[0]


def test_center_update_only_in_training_mode():
    loss = CenterLoss(num_classes=2, feat_dim=2, center_update=True)
    loss.eval()
    before = loss.centers.numpy().copy()
    loss({"features": paddle.ones([2, 2])}, paddle.to_tensor([0, 1]))
    np.testing.assert_array_equal(loss.centers.numpy(), before)


def test_center_update_alpha_is_validated():
    with pytest.raises(ValueError, match="alpha"):
        CenterLoss(num_classes=2, feat_dim=2, center_update=True, alpha=1.5)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("feats,label,match", [
    (paddle.zeros([4, 5]), paddle.zeros([4], "int64"), "feat_dim=4"),
    (paddle.zeros([4, 4]), paddle.zeros([3], "int64"), "3 entries but the batch has 4"),
    (paddle.zeros([4, 4]), paddle.to_tensor([0, 1, 7, 0]), "outside 0..2"),
    (paddle.zeros([4, 4]), paddle.zeros([4], "float32"), "integer class ids"),
    (paddle.full([4, 4], float("nan")), paddle.zeros([4], "int64"), "NaN"),
    (paddle.zeros([0, 4]), paddle.zeros([0], "int64"), "empty batch"),
])
def test_bad_input_raises_input_error(feats, label, match):
    with pytest.raises(InputError, match=match):
        CenterLoss(num_classes=3, feat_dim=4)({"features": feats}, label)


def test_missing_feature_key_lists_present_keys():
    with pytest.raises(InputError, match="'logits'"):
        CenterLoss(num_classes=3, feat_dim=4, feature_from="backbone")({"logits": paddle.zeros([2, 4])},
                                                                       paddle.zeros([2], "int64"))


def test_runs_under_to_static():
    loss = CenterLoss(num_classes=3, feat_dim=4)
    x = paddle.randn([6, 4])
    y = paddle.to_tensor([[0], [1], [2], [0], [1], [2]])

    def compute(f, t):
        return loss({"features": f}, t)["CenterLoss"]

    dynamic = float(compute(x, y))
    np.testing.assert_allclose(float(paddle.jit.to_static(compute)(x, y)), dynamic, rtol=1e-6)
