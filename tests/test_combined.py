"""CombinedLoss / build_loss: golden parity and the two documented fixes (docs/compatibility.md C1-C3)."""
import copy

import numpy as np
import paddle
import pytest

import paddle_losses as pl
from paddle_losses.errors import ConfigError
from golden import assert_close, case, tensor


def run(config, c, weights_grad=("logits", "features", "backbone")):
    inputs = {k: tensor(c[f"input__{k}"], grad=True) for k in weights_grad}
    out = pl.build_loss(config)(inputs, tensor(c["label"]))
    out["loss"].backward()
    grads = {k: (v.grad.numpy() if v.grad is not None else np.zeros(v.shape, "float32"))
             for k, v in inputs.items()}
    return out, grads


@pytest.mark.parametrize("name", ["CombinedLoss__gr_v2", "CombinedLoss__ce_tripletv2_weighted"])
def test_golden_combined_cases_match(name):
    c = case("metric", name)
    out, grads = run(c.meta["config"], c)
    assert list(out) == c.meta["output_keys"]
    for key in c.meta["output_keys"]:
        assert_close(out[key], c[f"out__{key}"], f"{name} out {key}")
    for k, g in grads.items():
        assert_close(g, c[f"grad__{k}"], f"{name} grad {k}")


def test_single_loss_weight_is_honoured():
    # PaddleClas ignores the weight of a lone loss (golden: value unchanged at weight 0.25).
    c = case("metric", "CombinedLoss__single_weight_ignored")
    out, grads = run(c.meta["config"], c)
    w = c.meta["config"][0]["TripletLossV2"]["weight"]
    assert_close(out["loss"], w * c["out__loss"], "weighted loss")
    assert_close(out["TripletLossV2"], w * c["out__TripletLossV2"], "weighted key")
    assert_close(grads["features"], w * c["grad__features"], "weighted gradient")


def test_duplicate_keys_are_kept_and_summed():
    # PaddleClas keeps only the later CELoss (golden loss == 2.0 * CE_eps); we keep both.
    c = case("metric", "CombinedLoss__duplicate_key_overwrite")
    out, grads = run(c.meta["config"], c)
    assert list(out) == ["CELoss", "CELoss_1", "loss"]
    assert_close(out["CELoss_1"], c["out__CELoss"], "later entry equals PaddleClas's survivor")
    logits = tensor(c["input__logits"], grad=True)
    plain = pl.get_loss("CELoss")()({"logits": logits}, tensor(c["label"]))["CELoss"]
    plain.backward()
    assert_close(out["CELoss"], 0.5 * plain.numpy(), "first entry weighted 0.5")
    assert_close(out["loss"], 0.5 * plain.numpy() + c["out__loss"], "both summed")
    assert_close(grads["logits"], 0.5 * logits.grad.numpy() + c["grad__logits"], "both gradients")


@pytest.fixture
def toys(scratch_registry):
    @pl.register_loss
    class ToyTwoKeyLoss(paddle.nn.Layer):
        def __init__(self, a: float = 1.0):
            super().__init__()
            self.a = a
            self.centers = self.create_parameter([3, 2])

        def forward(self, input, target):
            x = input["features"]
            return {"first": x.sum() * self.a, "second": (x * x).sum()}

    @pl.register_loss
    class ToyTotalKeyLoss(paddle.nn.Layer):
        def forward(self, input, target):
            return {"loss": input["features"].mean()}

    return scratch_registry


def test_multi_key_loss_sums_all_keys(toys):
    x = paddle.to_tensor([[1.0, 2.0]])
    out = pl.build_loss([{"ToyTwoKeyLoss": {"weight": 2.0, "a": 3.0}}])({"features": x}, None)
    assert float(out["first"]) == pytest.approx(2 * 9.0)
    assert float(out["second"]) == pytest.approx(2 * 5.0)
    assert float(out["loss"]) == pytest.approx(28.0)


def test_a_loss_emitting_loss_key_does_not_clobber_the_total(toys):
    x = paddle.to_tensor([[1.0, 3.0]])
    out = pl.build_loss([{"ToyTotalKeyLoss": {"weight": 1.0}}, {"ToyTwoKeyLoss": {"weight": 1.0}}])(
        {"features": x}, None)
    assert list(out) == ["loss_1", "first", "second", "loss"]
    assert float(out["loss"]) == pytest.approx(2.0 + 4.0 + 10.0)


def test_structure_matches_paddleclas_for_checkpoints_and_scopes(toys):
    combined = pl.build_loss([{"ToyTotalKeyLoss": {"weight": 1.0}}, {"ToyTwoKeyLoss": {"weight": 0.5}}])
    assert isinstance(combined.loss_func, paddle.nn.LayerList)
    assert list(combined.state_dict()) == ["loss_func.1.centers"]
    assert [type(m).__name__ for m in combined.sublayers()] == ["LayerList", "ToyTotalKeyLoss", "ToyTwoKeyLoss"]
    assert len(combined.parameters()) == 1
    assert combined.loss_weight == [1.0, 0.5]


def test_build_loss_none_and_config_not_mutated(toys):
    assert pl.build_loss(None) is None
    config = [{"ToyTwoKeyLoss": {"weight": 0.5, "a": 2.0}}]
    before = copy.deepcopy(config)
    pl.build_loss(config)
    assert config == before


def test_forward_hooks_run_because_call_is_not_overridden(toys):
    combined = pl.build_loss([{"ToyTwoKeyLoss": {"weight": 1.0}}])
    seen = []
    combined.register_forward_post_hook(lambda layer, inp, out: seen.append(sorted(out)))
    combined({"features": paddle.ones([1, 2])}, None)
    assert seen == [["first", "loss", "second"]]


def test_total_is_differentiable(toys):
    x = paddle.to_tensor([[1.0, 2.0]], stop_gradient=False)
    out = pl.build_loss([{"ToyTwoKeyLoss": {"weight": 0.5}}])({"features": x}, None)
    out["loss"].backward()
    np.testing.assert_allclose(x.grad.numpy(), 0.5 * (1.0 + 2 * x.numpy()))


@pytest.mark.parametrize("spec,match", [
    ({"miner": {"name": "MultiSimilarityMinr"}},
     r"^Loss\.Train\[0\]\.MultiSimilarityLoss\.miner\.name: miner 'MultiSimilarityMinr' is not registered\. "
     r"Did you mean 'MultiSimilarityMiner'"),
    ({"miner": {"name": "MultiSimilarityMiner", "epsiln": 0.1}},
     r"^Loss\.Train\[0\]\.MultiSimilarityLoss\.miner\.epsiln: .*Did you mean 'epsilon'"),
    ({"distance": "Cosine"},
     r"^Loss\.Train\[0\]\.MultiSimilarityLoss\.distance\.name: distance 'Cosine' is not registered"),
])
def test_nested_part_errors_carry_the_full_config_path(spec, match):
    with pytest.raises(ConfigError, match=match):
        pl.build_loss([{"MultiSimilarityLoss": {"weight": 1.0, **spec}}])


def test_gather_entry_wraps_that_loss_only_and_is_the_plain_loss_in_one_process():
    import numpy as np
    import paddle

    from paddle_losses import build_loss
    from paddle_losses.distributed import is_gathered

    loss = build_loss([{"CELoss": {"weight": 1.0}}, {"TripletLossV2": {"weight": 1.0, "margin": 0.3, "gather": True}}])
    assert [is_gathered(f) for f in loss.loss_func] == [False, True]
    plain = build_loss([{"CELoss": {"weight": 1.0}}, {"TripletLossV2": {"weight": 1.0, "margin": 0.3}}])
    rng = np.random.RandomState(0)
    out = {"features": paddle.to_tensor(rng.randn(6, 4).astype("float32")),
           "logits": paddle.to_tensor(rng.randn(6, 3).astype("float32"))}
    y = paddle.to_tensor(np.array([0, 0, 1, 1, 2, 2], "int64"))
    assert float(loss(out, y)["loss"]) == float(plain(out, y)["loss"])
    # state-dict keys are unchanged by the wrapper
    assert list(loss.state_dict()) == list(plain.state_dict())
