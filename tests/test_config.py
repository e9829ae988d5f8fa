"""Config loading and the -o override grammar (paddleclas_surface.md 1.3, 1.4, 7.2, 7.3)."""
import builtins
import copy

import pytest

from paddle_losses.config import (AttrDict, apply_override, eval_numeric, format_config, load_config,
                                  parse_config, parse_value)
from paddle_losses.errors import ConfigError, ConfigWarning

BASE = """
Global:
  epochs: 10
  output_dir: ./output/
  device: gpu
Arch:
  name: RecModel
  Head:
    name: FC
    embedding_size: &feat_dim 64
    class_num: &class_num 5
Loss:
  Train:
    - CELoss:
        weight: 1.0
        epsilon: 0.1
    - CenterLoss:
        weight: 5e-4
        num_classes: *class_num
        feat_dim: *feat_dim
DataLoader:
  Train:
    dataset:
      transform_ops:
        - NormalizeImage:
            scale: 1.0/255.0
            mean: [0.485, 0.456, 0.406]
defaults: &defaults
  lr: 0.1
  momentum: 0.9
Optimizer:
  <<: *defaults
  name: Momentum
"""


def cfg(*overrides):
    c = parse_config(BASE)
    for o in overrides:
        apply_override(c, o)
    return c


# ---------------------------------------------------------------------------------------- loading
def test_attribute_and_item_access_on_nested_sections():
    c = cfg()
    assert c.Global.epochs == 10 and c["Global"]["epochs"] == 10
    assert isinstance(c.Loss.Train[0], AttrDict)  # dicts inside lists too (superset of PaddleClas)
    assert c.Loss.Train[0].CELoss.epsilon == 0.1


def test_anchors_aliases_and_merge_keys_resolve():
    c = cfg()
    assert c.Loss.Train[1].CenterLoss.num_classes == 5
    assert c.Loss.Train[1].CenterLoss.feat_dim == 64
    assert c.Optimizer.lr == 0.1 and c.Optimizer.momentum == 0.9 and c.Optimizer.name == "Momentum"


def test_scientific_notation_in_lists_becomes_float():
    # PaddleClas leaves this weight the string '5e-4' (its literal_eval skips lists) and crashes in add_n.
    assert cfg().Loss.Train[1].CenterLoss.weight == pytest.approx(5e-4)
    assert isinstance(cfg().Loss.Train[1].CenterLoss.weight, float)


def test_quoted_numbers_and_tuples_in_mappings_become_literals_like_paddleclas():
    c = parse_config("a: '0.1'\nb: '(1, 5)'\nc: 1e-3\nd: gpu\ne: './out/'\nf: 1.0/255.0\n")
    assert c.a == 0.1 and c.b == (1, 5) and c.c == 0.001
    assert c.d == "gpu" and c.e == "./out/"
    assert c.f == "1.0/255.0"  # arithmetic in YAML stays text; NormalizeImage parses it numerically


def test_config_is_deepcopyable_and_copies_are_independent():
    c = cfg()
    d = copy.deepcopy(c)
    d.Global.epochs = 99
    assert c.Global.epochs == 10 and isinstance(d, AttrDict) and isinstance(d.Global, AttrDict)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.yaml"))


def test_invalid_yaml_is_a_config_error():
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("a: [1, 2\nb: 3")


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError, match="mapping of sections"):
        parse_config("- 1\n- 2\n")


def test_unknown_sections_are_tolerated_and_typos_warned(recwarn):
    c = parse_config("Infer: {x: 1}\nimage_shape: [3, 8, 8]\n")
    assert c.Infer.x == 1
    with pytest.warns(ConfigWarning, match="Did you mean 'Loss'"):
        load_config(text="Los:\n  Train: []\n", validate=False)
    with pytest.warns(ConfigWarning, match="Did you mean Global.epochs"):
        load_config(text="Global:\n  epoch: 3\n", validate=False)


# ---------------------------------------------------------------------------------------- -o values
@pytest.mark.parametrize("text, expected", [
    ("20", 20), ("1e-3", 0.001), (".5", 0.5), ("-3", -3), ("[1,10]", [1, 10]), ("(1, 5)", (1, 5)),
    ("{'a': 1}", {"a": 1}), ("True", True), ("False", False), ("None", None),
    ("true", True), ("false", False), ("null", None),
    ("'quoted'", "quoted"), ("./output/", "./output/"), ("gpu", "gpu"),
    ("1/255", 1 / 255), ("2**10", 1024), ("-0.5*4", -2.0), ("(1+2)*3", 9),
    ("[1e-3, 2e-4]", [0.001, 0.0002]), ("[a, b]", ["a", "b"]),
])
def test_override_values_are_typed_without_eval(text, expected):
    assert parse_value(text) == expected
    assert type(parse_value(text)) is type(expected)


@pytest.mark.parametrize("word", ["round", "sum", "max", "min", "copy", "yaml", "os", "none", "mean"])
def test_bare_words_stay_strings_never_builtins(word):
    # PaddleClas's eval turns these into builtins/modules; `none` is a valid CELoss reduction.
    assert parse_value(word) == word


@pytest.mark.parametrize("text", ["__import__('os').system('echo pwned')", "open('/etc/passwd')",
                                  "(lambda: 1)()", "9**9**9"])
def test_code_in_values_is_never_executed(text, capfd):
    assert parse_value(text) == text
    assert "pwned" not in capfd.readouterr().out


def test_numeric_evaluator_rejects_names_and_calls():
    with pytest.raises(ValueError):
        eval_numeric("abs(-1)")
    with pytest.raises(ValueError):
        eval_numeric("x + 1")
    assert builtins.round is round  # nothing was rebound


# ---------------------------------------------------------------------------------------- -o keys
def test_override_sets_nested_values_and_list_indices():
    c = cfg("Global.epochs=3", "Loss.Train.0.CELoss.epsilon=0.2", "Loss.Train.-1.CenterLoss.weight=1e-3")
    assert c.Global.epochs == 3
    assert c.Loss.Train[0].CELoss.epsilon == 0.2
    assert c.Loss.Train[1].CenterLoss.weight == 0.001


def test_overrides_apply_in_order_later_wins():
    assert cfg("Global.epochs=3", "Global.epochs=4").Global.epochs == 4


def test_value_may_contain_equals_sign():
    assert cfg("Global.note=a=b").Global.note == "a=b"


def test_new_keys_are_created_with_a_did_you_mean_warning():
    with pytest.warns(ConfigWarning, match="Did you mean 'epochs'"):
        c = cfg("Global.epoch=5")
    assert c.Global.epoch == 5 and c.Global.epochs == 10
    with pytest.warns(ConfigWarning):
        c = cfg("New.Series.field=1")
    assert c.New.Series.field == 1 and isinstance(c.New, AttrDict)


def test_lowercase_false_is_a_real_boolean():
    assert cfg("Global.eval_during_train=false").Global.eval_during_train is False


def test_override_errors_name_the_path():
    with pytest.raises(ConfigError, match=r"index 5 is out of range for Loss.Train \(a list of 2"):
        cfg("Loss.Train.5.CELoss.weight=1")
    with pytest.raises(ConfigError, match=r"Loss.Train is a list, so the next key must be an integer"):
        cfg("Loss.Train.first.weight=1")
    with pytest.raises(ConfigError, match=r"Global.epochs is a int \(10\), not a mapping"):
        cfg("Global.epochs.sub=1")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        cfg("Global.epochs")
    with pytest.raises(ConfigError, match="empty key segment"):
        cfg("Global..epochs=1")


def test_overriding_an_anchor_does_not_update_its_aliases_as_in_paddleclas():
    c = cfg("Arch.Head.class_num=100")
    assert c.Arch.Head.class_num == 100
    assert c.Loss.Train[1].CenterLoss.num_classes == 5


def test_load_config_applies_overrides_and_validates(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("Global:\n  epochs: 2\n")
    c = load_config(str(p), overrides=["Global.epochs=7"])
    assert c.Global.epochs == 7


# ---------------------------------------------------------------------------------------- printing
def test_format_config_matches_paddleclas_print_config_layout():
    lines = format_config(parse_config("Global:\n  epochs: 2\n  sub:\n    a: 1\nLoss:\n  Train:\n"
                                       "    - CELoss:\n        weight: 1.0\nlower: 3\n"))
    assert lines == [
        "Global : ", "    epochs : 2", "    sub : ", "        a : 1", "-" * 60,
        "Loss : ", "    Train : ", "        CELoss : ", "            weight : 1.0", "-" * 60,
        "lower : 3",
    ]


# ---------------------------------------------------------------------------------------- bounds
def _alias_bomb(levels, width=9):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + f"\nGlobal: {{x: *a{levels - 1}}}\n"


def test_an_alias_bomb_is_refused_before_anything_is_copied():
    import time
    text = _alias_bomb(9)  # 448 bytes that would expand to ~8e8 values
    start = time.time()
    with pytest.raises(ConfigError, match="expands to more than 100,000 values"):
        parse_config(text)
    assert time.time() - start < 1.0


def test_small_alias_trees_still_expand_into_independent_copies():
    c = parse_config(_alias_bomb(3))  # 9 * 9 * 9 = 729 leaves, twice
    assert len(c.Global.x) == 9 and c.Global.x[0][0] == ["lol"] * 9
    c.Global.x[0][0][0] = "changed"
    assert c.Global.x[1][0][0] == "lol" and c.a2[0][0][0] == "lol"


def test_a_self_referencing_alias_is_refused():
    with pytest.raises(ConfigError, match="contains itself"):
        parse_config("a: &a [1, *a]\n")


def test_deep_nesting_is_refused_with_a_config_error():
    with pytest.raises(ConfigError, match="nests deeper than 64 levels"):
        parse_config("a: " + "[" * 100 + "]" * 100)
    with pytest.raises(ConfigError, match="nests deeper than YAML parsing allows"):
        parse_config("a: " + "[" * 5000 + "]" * 5000)


def test_a_huge_config_file_is_refused_by_size(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("Global:\n  note: " + "x" * (3 * 1024 * 1024) + "\n")
    with pytest.raises(ConfigError, match=r"big\.yaml has 3,145,7\d\d bytes; a config is at most 2,097,152"):
        load_config(str(path))


def test_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(ConfigError, match=r"config file .*broken\.yaml is not valid YAML"):
        load_config(str(path))
    path.write_bytes(b"Global:\n  x: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml is not UTF-8 text"):
        load_config(str(path))


@pytest.mark.parametrize("option,message", [
    ("Global.x=" + "[" * 100_000, "has 100,000 characters"),
    ("Global.x=" + "[" * 100 + "]" * 100, "nests 100 brackets deep"),
    (".".join(["a"] * 100_000) + "=1", "has 100000 segments"),
    ("Global.epochs=" + "1" * 4300, "has 4,300 characters"),
    ("Loss.Train.0.CELoss.weight=1e999", "overflows to inf"),
])
def test_override_keys_and_values_are_bounded(option, message):
    with pytest.raises(ConfigError, match=message):
        cfg(option)


@pytest.mark.parametrize("text", ["Loss:\n  Train:\n    - CELoss: {weight: 1e999}\n",
                                  "Loss:\n  Train:\n    - CELoss: {weight: .inf}\n",
                                  "Loss:\n  Train:\n    - TripletLossV2: {margin: .nan}\n"])
def test_non_finite_weights_and_margins_are_refused(text):
    with pytest.raises(ConfigError, match=r"Loss\.Train\[0\]\.\w+\.(weight|margin)"):
        parse_config(text)
