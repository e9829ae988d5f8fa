"""FC head: linear logits, PaddleClas state-dict names (fc.weight / fc.bias), ParamAttr configs, label
ignored, gradients and input validation."""
import math

import numpy as np
import paddle
import pytest

import paddle_losses as pl
from gradcheck import assert_gradcheck
from paddle_losses.errors import ConfigError, InputError
from paddle_losses.heads.fc import FC
from paddle_losses.validation import validate_head_config

RNG = np.random.default_rng(4)


def test_logits_are_affine_in_the_input_and_ignore_the_label():
    head = FC(6, 3)
    head.fc.bias.set_value(np.array([0.5, -1.0, 2.0], "float32"))
    x = RNG.normal(size=(5, 6)).astype("float32")
    expected = x @ head.fc.weight.numpy() + head.fc.bias.numpy()
    np.testing.assert_allclose(head(paddle.to_tensor(x)).numpy(), expected, rtol=1e-5, atol=1e-6)
    with_label = head(paddle.to_tensor(x), paddle.zeros([5, 1], "int64")).numpy()
    np.testing.assert_array_equal(with_label, head(paddle.to_tensor(x)).numpy())


def test_state_dict_names_match_paddleclas_checkpoints():
    assert list(FC(6, 3).state_dict()) == ["fc.weight", "fc.bias"]
    assert list(FC(6, 3).fc.weight.shape) == [6, 3]


def test_default_init_is_xavier_normal_weight_and_zero_bias():
    paddle.seed(2)
    head = FC(300, 200)
    np.testing.assert_allclose(head.fc.weight.numpy().std(), math.sqrt(2 / 500), rtol=0.05)
    assert not np.any(head.fc.bias.numpy())


def test_bias_can_be_switched_off_and_weight_initializer_configured():
    head = FC(40, 30, weight_attr={"initializer": {"name": "Normal", "std": 0.001}}, bias_attr=False)
    assert list(head.state_dict()) == ["fc.weight"]
    assert head.fc.weight.numpy().std() < 0.002


def test_attr_config_errors_are_clear():
    with pytest.raises(ValueError, match="not a paddle.nn.initializer"):
        FC(4, 3, weight_attr={"initializer": {"name": "Gaussian"}})
    with pytest.raises(ValueError, match="unknown keys"):
        FC(4, 3, bias_attr={"lr": 0.1})
    with pytest.raises(ValueError, match="positive"):
        FC(0, 3)


def test_registered_and_validated_from_config():
    assert pl.get_head("FC") is FC
    cfg = {"name": "FC", "embedding_size": 512, "class_num": 10, "bias_attr": False,
           "weight_attr": {"initializer": {"name": "Normal", "std": 0.001}}}
    assert validate_head_config(cfg) is FC
    with pytest.raises(ConfigError, match="class_num"):
        validate_head_config({"name": "FC", "embedding_size": 512})


def test_input_gradient_matches_finite_differences():
    old = paddle.get_default_dtype()
    paddle.set_default_dtype("float64")
    try:
        head = FC(4, 3)
    finally:
        paddle.set_default_dtype(old)
    assert_gradcheck(lambda x: (head(x) ** 2).sum(), [RNG.normal(size=(5, 4))])


def test_bad_input_raises_input_error():
    head = FC(6, 3)
    with pytest.raises(InputError, match="embedding_size=6"):
        head(paddle.ones([2, 5]))
    with pytest.raises(InputError, match=r"shape \[N, D\]"):
        head(paddle.ones([6]))
    with pytest.raises(InputError, match="NaN"):
        head(paddle.full([2, 6], float("nan")))
