"""The shared selection/naming mechanism of the Distillation* wrappers."""
import paddle
import pytest

from paddle_losses.errors import InputError
from paddle_losses.losses.distillation.selection import (check_model_pairs, model_output, named_results,
                                                         reported_as)


def test_model_output_picks_the_model_then_the_key():
    logits = paddle.zeros([2, 3])
    predicts = {"Student": {"logits": logits}, "Teacher": logits}
    assert model_output(predicts, "Student", "logits") is logits
    assert model_output(predicts, "Teacher") is logits
    assert model_output(predicts, "Student", accept_dict=True) is predicts["Student"]


def test_model_output_errors_say_what_was_expected_and_found():
    predicts = {"Student": {"logits": paddle.zeros([2, 3])}}
    with pytest.raises(InputError, match=r"model 'Teacher' is not in the input; models present: \['Student'\]"):
        model_output(predicts, "Teacher", "logits")
    with pytest.raises(InputError, match=r"has no key 'feat'; its keys are \['logits'\]"):
        model_output(predicts, "Student", "feat")
    with pytest.raises(InputError, match="set `key`"):
        model_output(predicts, "Student")


def test_named_results_formats_tensor_and_dict_results():
    v = paddle.to_tensor(1.0)
    assert named_results(v, "{name}_{a}_{b}", name="kd", a="S", b="T") == {"kd_S_T": v}
    assert named_results({"loss_l2": v, "x": v}, "{name}_{idx}", "{name}_{idx}_{inner}", name="p", idx=1) == {
        "p_1_loss_l2": v, "p_1_x": v}
    with pytest.raises(TypeError, match="must return a Tensor or a dict"):
        named_results(1.0, "{name}", name="x")


def test_reported_as_prefixes_input_errors_only():
    with pytest.raises(InputError, match=r"^Wrapper, pair 0: bad$"):
        with reported_as("Wrapper", "pair 0"):
            raise InputError("bad")
    with pytest.raises(KeyError):
        with reported_as("Wrapper", "pair 0"):
            raise KeyError("other errors pass through unchanged")


def test_model_pairs_must_be_pairs_of_names():
    assert check_model_pairs("W", [["S", "T"], ("S", "A")]) == [("S", "T"), ("S", "A")]
    for bad in (["S", "T"], [["S"]], [["S", "T", "A"]], [[1, 2]], "ST"):
        with pytest.raises(ValueError, match=r"W: model_name_pairs must be a list of \[student, teacher\]"):
            check_model_pairs("W", bad)
