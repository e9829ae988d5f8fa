"""MetaBIN losses: golden parity, float64 NumPy references (balanced and unbalanced batches), gradients,
fixed crashes and input validation."""
import numpy as np
import paddle
import pytest

import paddle_losses as pl
from golden import case, cases
from gradcheck import assert_gradcheck
from losses.other_case_replay import replay
from paddle_losses.errors import InputError
from paddle_losses.losses.metabin import (CELossForMetaBIN, InterDomainShuffleLoss, IntraDomainScatterLoss,
                                          TripletLossForMetaBIN)

GOLDEN = [c for prefix in ("CELossForMetaBIN", "TripletLossForMetaBIN", "IntraDomainScatterLoss",
                           "InterDomainShuffleLoss") for c in cases("other", f"{prefix}*.npz")]


@pytest.mark.parametrize("golden_case", GOLDEN, ids=lambda c: c.name)
def test_golden_replay_outputs_and_gradients(golden_case):
    replay(golden_case, pl.get_loss(golden_case.meta["class"])(**golden_case.params))


def test_golden_cases_cover_all_metabin_losses():
    assert len(GOLDEN) == 6


# ---------------------------------------------------------------- NumPy references (float64)

def _np_normalize(x):
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)


def _np_dist(x):
    sq = (x * x).sum(1)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 1e-12))


def _np_mine(d, pos, neg):
    ap = np.where(pos, d, -np.inf).max(1)
    an = np.where(neg, d, np.inf).min(1)
    return ap, an


def _np_triplet(x, y, margin, normalize):
    x = _np_normalize(x) if normalize else x
    ap, an = _np_mine(_np_dist(x), y[:, None] == y[None, :], y[:, None] != y[None, :])
    return np.maximum(ap - an + margin, 0).mean()


def _np_intra(x, dom, normalize):
    x = _np_normalize(x) if normalize else x
    per_domain = []
    for d in np.unique(dom):
        g = x[dom == d]
        c = g.mean(0)
        cos = g @ c / (np.linalg.norm(g, axis=1) * np.linalg.norm(c) + 1e-8)
        per_domain.append(cos.mean())
    return np.mean(per_domain)


def _np_inter(x, y, dom, normalize):
    x = _np_normalize(x) if normalize else x
    n = len(y)
    pos = np.eye(n, dtype=bool) | (dom[:, None] != dom[None, :])
    neg = (y[:, None] != y[None, :]) & (dom[:, None] == dom[None, :])
    ap, an = _np_mine(_np_dist(x), pos, neg)
    with np.errstate(over="ignore"):
        soft = np.log1p(np.exp(ap - an)).mean()  # an = +inf rows give 0
    if np.isinf(soft):
        return np.maximum(ap - an + 0.3, 0).mean()
    return soft


def _batch(seed, n=10, d=5, scale=1.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, scale, (n, d))
    labels = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3][:n], dtype=np.int64)  # unbalanced, one singleton
    domains = np.array([0, 1, 0, 1, 2, 2, 0, 1, 1, 3][:n], dtype=np.int64)  # unequal sizes, a singleton
    return x, labels, domains


@pytest.mark.parametrize("normalize", [False, True])
def test_triplet_matches_float64_numpy_reference_on_unbalanced_batch(normalize):
    x, y, _ = _batch(0)
    loss = TripletLossForMetaBIN(margin=0.5, normalize_feature=normalize, feature_from="backbone")
    got = loss({"backbone": paddle.to_tensor(x)}, {"label": paddle.to_tensor(y)})["TripletLoss"]
    np.testing.assert_allclose(got.numpy(), _np_triplet(x, y, 0.5, normalize), rtol=1e-10)


def test_triplet_with_a_single_label_is_zero_with_a_gradient_path():
    x, _, _ = _batch(1)
    xt = paddle.to_tensor(x, stop_gradient=False)
    out = TripletLossForMetaBIN(feature_from="f")({"f": xt}, {"label": paddle.zeros([10], "int64")})["TripletLoss"]
    out.backward()
    assert float(out) == 0.0 and np.all(xt.grad.numpy() == 0)


@pytest.mark.parametrize("normalize", [False, True])
def test_intra_domain_scatter_matches_float64_numpy_reference(normalize):
    x, _, dom = _batch(2)
    loss = IntraDomainScatterLoss(normalize_feature=normalize, feature_from="backbone")
    got = loss({"backbone": paddle.to_tensor(x)}, {"domain": paddle.to_tensor(dom)})["IntraDomainScatterLoss"]
    np.testing.assert_allclose(got.numpy(), _np_intra(x, dom, normalize), rtol=1e-10)


@pytest.mark.parametrize("normalize", [False, True])
def test_inter_domain_shuffle_matches_float64_numpy_reference(normalize):
    x, y, dom = _batch(3)
    loss = InterDomainShuffleLoss(normalize_feature=normalize, feature_from="backbone")
    out = loss({"backbone": paddle.to_tensor(x)}, {"label": paddle.to_tensor(y), "domain": paddle.to_tensor(dom)})
    np.testing.assert_allclose(out["InterDomainShuffleLoss"].numpy(), _np_inter(x, y, dom, normalize), rtol=1e-10)


def test_inter_domain_rows_without_negatives_count_as_zero_in_the_mean():
    x, y, dom = _batch(4)
    neg = (y[:, None] != y[None, :]) & (dom[:, None] == dom[None, :])
    assert not neg.any(axis=1).all()  # the batch has anchors without a same-domain negative
    ap, an = _np_mine(_np_dist(x), np.eye(10, dtype=bool) | (dom[:, None] != dom[None, :]), neg)
    valid = np.isfinite(an)
    want = np.log1p(np.exp(ap[valid] - an[valid])).sum() / len(y)  # divided by all N, as PaddleClas
    got = InterDomainShuffleLoss(normalize_feature=False)(
        {"features": paddle.to_tensor(x)}, {"label": paddle.to_tensor(y), "domain": paddle.to_tensor(dom)})
    np.testing.assert_allclose(got["InterDomainShuffleLoss"].numpy(), want, rtol=1e-10)


def test_inter_domain_falls_back_to_margin_ranking_when_soft_margin_overflows():
    x, y, dom = _batch(5, scale=400.0)
    x32 = x.astype(np.float32)
    xt = paddle.to_tensor(x32, stop_gradient=False)
    out = InterDomainShuffleLoss(normalize_feature=False)(
        {"features": xt}, {"label": paddle.to_tensor(y), "domain": paddle.to_tensor(dom)})["InterDomainShuffleLoss"]
    out.backward()
    ap, an = _np_mine(_np_dist(x32.astype(np.float64)), np.eye(10, dtype=bool) | (dom[:, None] != dom[None, :]),
                      (y[:, None] != y[None, :]) & (dom[:, None] == dom[None, :]))
    assert np.nanmax(np.where(np.isfinite(an), ap - an, -np.inf)) > 88.8  # float32 exp overflows
    np.testing.assert_allclose(out.numpy(), np.maximum(ap - an + 0.3, 0).mean(), rtol=1e-5)
    assert np.all(np.isfinite(xt.grad.numpy()))


# ---------------------------------------------------------------- gradients (float64 finite differences)

def test_triplet_gradient_matches_finite_differences():
    x, y, _ = _batch(6)
    loss = TripletLossForMetaBIN(margin=2.0, normalize_feature=True, feature_from="f")
    label = {"label": paddle.to_tensor(y)}
    assert_gradcheck(lambda a: loss({"f": a}, label)["TripletLoss"], [x])


@pytest.mark.parametrize("normalize", [False, True])
def test_intra_domain_gradient_matches_finite_differences(normalize):
    x, _, dom = _batch(7)
    loss = IntraDomainScatterLoss(normalize_feature=normalize, feature_from="f")
    batch = {"domain": paddle.to_tensor(dom)}
    assert_gradcheck(lambda a: loss({"f": a}, batch)["IntraDomainScatterLoss"], [x])


def test_inter_domain_gradient_matches_finite_differences_in_both_branches():
    loss = InterDomainShuffleLoss(normalize_feature=False)
    for seed, scale in ((8, 1.0), (9, 800.0)):  # 800: ap − an > 709, float64 exp overflows -> fallback
        x, y, dom = _batch(seed, scale=scale)
        batch = {"label": paddle.to_tensor(y), "domain": paddle.to_tensor(dom)}
        value = loss({"features": paddle.to_tensor(x)}, batch)["InterDomainShuffleLoss"]
        np.testing.assert_allclose(value.numpy(), _np_inter(x, y, dom, False), rtol=1e-10)
        assert_gradcheck(lambda a: loss({"features": a}, batch)["InterDomainShuffleLoss"], [x],
                         eps=1e-6 * scale)


# ---------------------------------------------------------------- CELossForMetaBIN

def _log_softmax(x):
    z = x - x.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


@pytest.mark.parametrize("num_classes,epsilon", [(5, 0.1), (2, 0.3), (2, 0.8), (7, 0.9)])
def test_ce_for_metabin_puts_one_minus_eps_on_truth_and_spreads_eps_over_others(num_classes, epsilon):
    # (2, 0.8): ε′ = 1.6 > 1, where PaddleClas's label_smooth raises ValueError
    rng = np.random.default_rng(num_classes)
    x = rng.normal(0, 2, (6, num_classes))
    y = rng.integers(0, num_classes, 6)
    target = np.full((6, num_classes), epsilon / (num_classes - 1))
    target[np.arange(6), y] = 1 - epsilon
    got = CELossForMetaBIN(epsilon=epsilon)(paddle.to_tensor(x), {"label": paddle.to_tensor(y)})["CELoss"]
    np.testing.assert_allclose(got.numpy(), (-target * _log_softmax(x)).sum(1).mean(), rtol=1e-10)


def test_ce_for_metabin_without_epsilon_is_celoss():
    x, y = np.random.default_rng(3).normal(size=(6, 4)), np.array([[0], [1], [2], [3], [0], [1]])
    a = CELossForMetaBIN()({"logits": paddle.to_tensor(x)}, {"label": paddle.to_tensor(y)})["CELoss"]
    b = pl.get_loss("CELoss")()(paddle.to_tensor(x), paddle.to_tensor(y))["CELoss"]
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)


def test_ce_for_metabin_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(6, 5)), paddle.to_tensor(rng.integers(0, 5, 6))
    loss = CELossForMetaBIN(epsilon=0.2, reduction="sum")
    assert_gradcheck(lambda a: loss(a, {"label": y})["CELoss"], [x])


def test_ce_for_metabin_keeps_its_configured_epsilon():
    loss = CELossForMetaBIN(epsilon=0.1)
    loss(paddle.randn([3, 4]), {"label": paddle.to_tensor([0, 1, 2])})
    assert loss.epsilon == 0.1
    with pytest.raises(InputError):
        loss(paddle.randn([3, 4]), {"label": paddle.to_tensor([0, 1, 9])})
    assert loss.epsilon == 0.1


def test_ce_for_metabin_single_class_smoothing_is_rejected():
    with pytest.raises(InputError, match="at least 2 classes"):
        CELossForMetaBIN(epsilon=0.1)(paddle.randn([3, 1]), {"label": paddle.zeros([3], "int64")})


# ---------------------------------------------------------------- input validation and config

def test_missing_batch_and_feature_keys_are_clear():
    x, y, dom = _batch(10)
    feats = {"backbone": paddle.to_tensor(x)}
    with pytest.raises(InputError, match=r"input\['feature'\].*\['backbone'\]"):
        TripletLossForMetaBIN()(feats, {"label": paddle.to_tensor(y)})
    with pytest.raises(InputError, match="domain"):
        IntraDomainScatterLoss(True, "backbone")(feats, {"label": paddle.to_tensor(y)})
    with pytest.raises(InputError, match="label"):
        InterDomainShuffleLoss(feature_from="backbone")(feats, {"domain": paddle.to_tensor(dom)})
    with pytest.raises(InputError, match="domain"):
        InterDomainShuffleLoss(feature_from="backbone")(feats, paddle.to_tensor(y))


def test_label_errors_are_clear():
    x, y, dom = _batch(11)
    feats = {"features": paddle.to_tensor(x)}
    with pytest.raises(InputError, match="10 samples"):
        InterDomainShuffleLoss()(feats, {"label": paddle.to_tensor(y[:4]), "domain": paddle.to_tensor(dom)})
    with pytest.raises(InputError, match="integer"):
        IntraDomainScatterLoss(False, "features")(feats, {"domain": paddle.to_tensor(dom.astype(np.float32))})
    with pytest.raises(InputError, match=r"\[N, D\]"):
        TripletLossForMetaBIN(feature_from="features")({"features": paddle.randn([2, 3, 4])},
                                                       {"label": paddle.to_tensor([0, 1])})


def test_metabin_config_entries_build():
    loss = pl.build_loss([
        {"CELossForMetaBIN": {"weight": 1.0, "epsilon": 0.1}},
        {"TripletLossForMetaBIN": {"weight": 1.0, "margin": 0.3, "feature_from": "backbone"}},
        {"IntraDomainScatterLoss": {"weight": 1.0, "normalize_feature": True, "feature_from": "backbone"}},
        {"InterDomainShuffleLoss": {"weight": 1.0, "normalize_feature": False, "feature_from": "backbone"}},
    ])
    x, y, dom = _batch(12)
    out = loss({"backbone": paddle.to_tensor(x.astype(np.float32)), "logits": paddle.randn([10, 4])},
               {"label": paddle.to_tensor(y), "domain": paddle.to_tensor(dom)})
    assert set(out) == {"CELoss", "TripletLoss", "IntraDomainScatterLoss", "InterDomainShuffleLoss", "loss"}
    with pytest.raises(pl.ConfigError, match="normalize_feature"):
        pl.build_loss([{"IntraDomainScatterLoss": {"weight": 1.0, "feature_from": "backbone"}}])


def test_inter_domain_and_ce_run_under_to_static():
    for name, key in (("InterDomainShuffleLoss_inf_fallback", "InterDomainShuffleLoss"),
                      ("CELossForMetaBIN", "CELoss")):
        c = case("other", name)
        layer = pl.get_loss(c.meta["class"])(**c.params)
        arg = "arg.input.backbone" if "arg.input.backbone" in c else "arg.x"

        def run(x, batch):
            inp = {"backbone": x} if arg == "arg.input.backbone" else x
            return layer(inp, batch)[key]

        batch = {k[len("arg.batch."):]: paddle.to_tensor(v) for k, v in c.arrays.items()
                 if k.startswith("arg.batch.")}
        x = paddle.to_tensor(c[arg], stop_gradient=False)
        out = paddle.jit.to_static(run)(x, batch)
        out.backward()
        np.testing.assert_allclose(out.numpy(), c[f"out.{key}"], rtol=1e-5)
        np.testing.assert_allclose(x.grad.numpy(), c[f"grad.{arg[4:]}"], rtol=1e-5, atol=1e-5)
