"""DistanceLoss, RKdAngle, RkdDistance, MGDLoss, PEFDLoss: golden parity (with seeded initialisation and
MGD's random mask), float64 references, gradients, fixes and input validation."""
import numpy as np
import paddle
import pytest

import paddle_losses as pl
from gradcheck import assert_gradcheck
from losses.distillation import reference as ref
from losses.distillation.replay import build_args, distill_case_names, load, replay
from paddle_losses.errors import InputError
from paddle_losses.losses.distillation.feature import (DistanceLoss, MGDLoss, PEFDLoss, RkdDistance,
                                                       RKdAngle)

FEATURE_CASES = distill_case_names(("DistanceLoss_", "RKdAngle", "RkdDistance_", "MGDLoss_", "PEFDLoss_"))


def f64(*shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).normal(size=shape) * scale


def t64(a, grad=False):
    t = paddle.to_tensor(np.asarray(a, dtype=np.float64))
    t.stop_gradient = not grad
    return t


def value(out):
    return float(next(iter(out.values()))) if isinstance(out, dict) else float(out)


def scalar(loss):
    return lambda *ts: (lambda out: next(iter(out.values())) if isinstance(out, dict) else out)(loss(*ts))


def test_all_feature_golden_cases_are_collected():
    assert len(FEATURE_CASES) == 10


@pytest.mark.parametrize("name", FEATURE_CASES)
def test_golden_replay_outputs_and_gradients(name):
    golden = load(name)
    loss = pl.get_loss(golden.meta["class"])(**golden.params)
    if golden.meta["seed_fwd"] is not None:
        paddle.seed(golden.meta["seed_fwd"])  # MGD draws its mask from the global generator
    replay(golden, loss)


@pytest.mark.parametrize("name", ["MGDLoss_align", "PEFDLoss_flatten", "PEFDLoss_gap"])
def test_seeded_initialisation_reproduces_paddleclas_parameters(name):
    golden = load(name)
    paddle.seed(golden.meta["seed_init"])
    loss = pl.get_loss(golden.meta["class"])(**golden.params)
    state = loss.state_dict()
    assert list(state) == golden.meta["state_dict_keys"]
    for key, param in state.items():
        np.testing.assert_allclose(param.numpy(), golden[f"param.{key}"], rtol=1e-6, atol=1e-7, err_msg=key)


# ---- MGD's random mask ------------------------------------------------------------------------------

def test_mgd_global_seed_draws_the_recorded_mask():
    golden = load("MGDLoss_align")
    loss = MGDLoss(**golden.params)
    args, _ = build_args(golden)
    paddle.seed(golden.meta["seed_fwd"])
    loss(*args)
    np.testing.assert_array_equal(loss.last_mask.numpy(), golden["aux.mgd_mask"])


def test_mgd_replays_a_recorded_mask_without_touching_the_generator():
    golden = load("MGDLoss_align")
    paddle.seed(999)  # anything: the mask argument replaces the draw
    replay(golden, MGDLoss(**golden.params),
           call=lambda loss, args: loss(*args, mask=paddle.to_tensor(golden["aux.mgd_mask"])))


def test_mgd_seed_parameter_gives_its_own_reproducible_stream():
    x, y = paddle.randn([4, 3, 2, 2]), paddle.randn([4, 5, 2, 2])
    a, b = MGDLoss(3, 5, lambda_mgd=0.5, seed=7), MGDLoss(3, 5, lambda_mgd=0.5, seed=7)
    b.set_state_dict(a.state_dict())
    paddle.seed(1)
    masks_a = []
    for _ in range(3):
        a(x, y)
        masks_a.append(a.last_mask.numpy())
    after_global = paddle.rand([3]).numpy()
    paddle.seed(1)
    np.testing.assert_array_equal(after_global, paddle.rand([3]).numpy())  # global stream not advanced
    paddle.seed(12345)  # a different global state must not change b's stream
    for expected in masks_a:
        b(x, y)
        np.testing.assert_array_equal(b.last_mask.numpy(), expected)
    assert any(not np.array_equal(masks_a[0], m) for m in masks_a[1:])  # a fresh mask per call


def test_mgd_matches_reference_with_a_given_mask():
    golden = load("MGDLoss_align")
    loss = MGDLoss(**golden.params)
    params = {k: v.numpy().astype(np.float64) for k, v in loss.state_dict().items()}
    s, t = f64(2, 4, 3, 3, seed=1), f64(2, 6, 3, 3, seed=2)
    mask = (np.random.default_rng(3).uniform(size=(2, 6, 1, 1)) >= 0.5).astype(np.float64)
    loss.to(dtype="float64")
    out = loss(t64(s), t64(t), mask=t64(mask))
    np.testing.assert_allclose(float(out), ref.mgd(s, t, params, mask, golden.params["alpha_mgd"]), rtol=1e-8)


def test_mgd_input_gradients_with_a_fixed_mask():
    paddle.seed(3)
    loss = MGDLoss(2, 3)
    loss.to(dtype="float64")
    mask = t64(np.array([1.0, 0.0, 1.0] * 2).reshape(2, 3, 1, 1))
    for index in (0, 1):
        assert_gradcheck(lambda s, t: loss(s, t, mask=mask), [f64(2, 2, 3, 3, seed=4), f64(2, 3, 3, 3, seed=5)],
                         index)


def test_mgd_without_align_has_only_generation_parameters():
    assert list(MGDLoss(4, 4).state_dict()) == ["generation.0.weight", "generation.0.bias",
                                               "generation.2.weight", "generation.2.bias"]


def test_mgd_bad_inputs_are_input_errors():
    loss = MGDLoss(4, 6)
    with pytest.raises(InputError, match=r"expected student \[N, 4, H, W\] and teacher \[N, 6, H, W\]"):
        loss(paddle.randn([2, 3, 5, 5]), paddle.randn([2, 6, 5, 5]))
    with pytest.raises(InputError, match="same spatial size"):
        loss(paddle.randn([2, 4, 5, 5]), paddle.randn([2, 6, 4, 4]))
    with pytest.raises(InputError, match=r"mask must be a keep-mask of shape \[2, 6, 1, 1\]"):
        loss(paddle.randn([2, 4, 5, 5]), paddle.randn([2, 6, 5, 5]), mask=paddle.ones([2, 4, 1, 1]))
    with pytest.raises(ValueError, match="student_channels must be a positive int"):
        MGDLoss(0, 6)


# ---- DistanceLoss -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,kargs", [("l1", {}), ("l2", {"reduction": "sum"}),
                                        ("smooth_l1", {"delta": 0.5}), ("l2", {"reduction": "none"})])
def test_distance_matches_reference(mode, kargs):
    x, y = f64(5, 6, seed=6), f64(5, 6, seed=7)
    out = DistanceLoss(mode, **kargs)(t64(x), t64(y))
    assert list(out) == [f"loss_{mode}"]
    np.testing.assert_allclose(out[f"loss_{mode}"].numpy(), ref.distance(x, y, mode, **kargs), rtol=1e-10)


@pytest.mark.parametrize("mode", ["l1", "l2", "smooth_l1"])
def test_distance_gradients_reach_both_inputs(mode):
    x, y = f64(3, 4, seed=8), f64(3, 4, seed=9)  # |x - y| stays away from 0 and from delta
    for index in (0, 1):
        assert_gradcheck(scalar(DistanceLoss(mode)), [x, y], index)


def test_distance_rejects_broadcastable_shape_mismatches():
    # Paddle's l1/mse losses would silently broadcast [N, D] against [N, 1].
    with pytest.raises(InputError, match=r"x and y must have the same shape, got x \[4, 3\] and y \[4, 1\]"):
        DistanceLoss("l2")(paddle.randn([4, 3]), paddle.randn([4, 1]))


def test_distance_rejects_unknown_options_and_modes():
    with pytest.raises(ValueError, match=r"does not accept \['delta'\]; it accepts \['reduction'\]"):
        DistanceLoss("l2", delta=1.0)
    with pytest.raises(ValueError, match="mode must be 'l1', 'l2' or 'smooth_l1'"):
        DistanceLoss("l3")
    with pytest.raises(ValueError, match="reduction must be one of"):
        DistanceLoss("l1", reduction="avg")


# ---- RKD ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target_size", [None, 2])
def test_rkd_angle_matches_reference(target_size):
    shape_s, shape_t = ((5, 6), (5, 9)) if target_size is None else ((5, 3, 5, 5), (5, 2, 4, 4))
    s, t = f64(*shape_s, seed=10), f64(*shape_t, seed=11)
    out = RKdAngle(target_size)(t64(s), t64(t))
    np.testing.assert_allclose(float(out), ref.rkd_angle(s, t, target_size), rtol=1e-9)


@pytest.mark.parametrize("target_size", [None, 1, 2])
def test_rkd_distance_matches_reference(target_size):
    shape_s, shape_t = ((5, 6), (5, 9)) if target_size is None else ((5, 3, 4, 4), (5, 2, 3, 3))
    s, t = f64(*shape_s, seed=12, scale=3.0), f64(*shape_t, seed=13)
    out = RkdDistance(target_size=target_size)(t64(s), t64(t))
    np.testing.assert_allclose(float(out), ref.rkd_distance(s, t, target_size=target_size), rtol=1e-9)


def test_rkd_gradients_reach_both_inputs():
    s, t = f64(4, 3, seed=14), f64(4, 5, seed=15)
    for loss in (RKdAngle(), RkdDistance(target_size=None)):
        for index in (0, 1):
            assert_gradcheck(loss, [s, t], index)


def test_rkd_distance_default_pooling_on_flat_features_is_a_clear_input_error():
    # PaddleClas: "ValueError: not enough values to unpack" from inside the pooling layer.
    with pytest.raises(InputError, match=r"rank 4, got \[6, 8\]; target_size=1 pools a \[N, C, H, W\] map, "
                                         r"set target_size: null"):
        RkdDistance()(paddle.randn([6, 8]), paddle.randn([6, 8]))


def test_rkd_batch_size_mismatch_is_an_input_error():
    with pytest.raises(InputError, match="same batch size, got 5 and 4"):
        RKdAngle()(paddle.randn([5, 3]), paddle.randn([4, 3]))


# ---- PEFD --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["flatten", "gap"])
def test_pefd_matches_reference(mode):
    paddle.seed(5)
    loss = PEFDLoss(12 if mode == "flatten" else 3, 4, num_projectors=2, mode=mode)
    weights = [p.conv.weight.numpy().astype(np.float64) for p in loss.projectors]
    biases = [f64(4, seed=20 + i) * 0.1 for i in range(2)]
    for p, b in zip(loss.projectors, biases):
        p.conv.bias.set_value(paddle.to_tensor(b.astype(np.float32)))
    loss.to(dtype="float64")
    for p, b in zip(loss.projectors, biases):
        p.conv.bias.set_value(t64(b))
    s, t = f64(5, 3, 2, 2, seed=16), f64(5, 4, *((1, 1) if mode == "flatten" else (2, 2)), seed=17)
    if mode == "flatten":
        t = t.reshape(5, 4)
    np.testing.assert_allclose(float(loss(t64(s), t64(t))), ref.pefd(s, t, weights, biases, mode), rtol=1e-9)


def test_pefd_input_gradients():
    paddle.seed(6)
    loss = PEFDLoss(6, 4, num_projectors=3)
    loss.to(dtype="float64")
    for index in (0, 1):
        assert_gradcheck(loss, [f64(4, 6, seed=18), f64(4, 4, seed=19)], index)


def test_pefd_row_zeroed_by_relu_gives_cosine_zero_instead_of_nan():
    loss = PEFDLoss(3, 2, num_projectors=1)
    loss.projectors[0].conv.weight.set_value(paddle.to_tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]))
    s = paddle.to_tensor([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], stop_gradient=False)  # row 0 projects to 0
    t = paddle.to_tensor([[1.0, 0.0], [1.0, 1.0]])
    out = loss(s, t)
    out.backward()
    np.testing.assert_allclose(float(out), (1.0 + 0.0) / 2, atol=1e-6)  # row 0: 1 - 0, row 1: 1 - 1
    assert np.all(np.isfinite(s.grad.numpy()))


def test_pefd_bad_widths_and_modes():
    with pytest.raises(InputError, match="expected a student of width 6 and a teacher of width 4 after 'flatten'"):
        PEFDLoss(6, 4)(paddle.randn([2, 5]), paddle.randn([2, 4]))
    with pytest.raises(InputError, match="mode 'gap' pools"):
        PEFDLoss(6, 4, mode="gap")(paddle.randn([2, 6]), paddle.randn([2, 4]))
    with pytest.raises(ValueError, match="num_projectors must be a positive int"):
        PEFDLoss(6, 4, num_projectors=0)
    with pytest.raises(ValueError, match="mode must be 'flatten' or 'gap'"):
        PEFDLoss(6, 4, mode="avg")


@pytest.mark.parametrize("full_graph", [False, True])
def test_rkd_distance_runs_under_to_static(full_graph):
    golden = load("RkdDistance_flat")
    s = paddle.to_tensor(golden["arg.student"], stop_gradient=False)
    loss = paddle.jit.to_static(RkdDistance(target_size=None), full_graph=full_graph)
    out = loss(s, paddle.to_tensor(golden["arg.teacher"]))
    out.backward()
    np.testing.assert_allclose(float(out), golden["out"], rtol=1e-5)
    np.testing.assert_allclose(s.grad.numpy(), golden["grad.student"], rtol=1e-5, atol=1e-5)
