"""Datasets and transforms: list-file parsing and its errors, relabelling, the embedded digits split, ops."""
import builtins

import numpy as np
import pytest

from engine_helpers import write_png
from paddle_losses.engine.data import DigitsDataset, ImageNetDataset, build_dataset, load_digits_arrays
from paddle_losses.engine.transforms import (DecodeImage, NormalizeImage, Pad, RandCropImage, RandFlipImage,
                                             ResizeImage, ToCHWImage, build_transforms)
from paddle_losses.errors import ConfigError


def test_list_file_rows_become_chw_float_images_labels_and_cameras(image_folder):
    ds = ImageNetDataset(str(image_folder / "images"), str(image_folder / "query_list.txt"),
                         transform_ops=[{"DecodeImage": {}}, {"NormalizeImage": {"order": ""}}])
    img, label, cam = ds[1]
    assert img.shape == (3, 18, 18) and img.dtype == np.float32
    assert (int(label), int(cam)) == (0, 1)
    assert len(ds) == 8


def test_missing_image_file_is_named(image_folder):
    lst = image_folder / "bad.txt"
    lst.write_text("0/0.png 0\n0/nope.png 0\n")
    with pytest.raises(ConfigError, match=r"bad.txt:2: image file .*0/nope.png does not exist"):
        ImageNetDataset(str(image_folder / "images"), str(lst))


def test_malformed_line_names_file_and_line_number(image_folder):
    lst = image_folder / "bad.txt"
    lst.write_text("0/0.png 0\n0/1.png zero\n")
    with pytest.raises(ConfigError, match=r"bad.txt:2: malformed line"):
        ImageNetDataset(str(image_folder / "images"), str(lst))
    lst.write_text("0/0.png\n")
    with pytest.raises(ConfigError, match=r"bad.txt:1: malformed line"):
        ImageNetDataset(str(image_folder / "images"), str(lst))


def test_label_outside_class_num_is_a_config_error(image_folder):
    with pytest.raises(ConfigError, match=r"train_list.txt:1: label 10 .* outside \[0, 4\)"):
        build_dataset({"name": "ImageNetDataset", "image_root": str(image_folder / "images"),
                       "cls_label_path": str(image_folder / "train_list.txt")}, "DataLoader.Train.dataset",
                      class_num=4)


def test_relabel_maps_labels_in_sorted_order(tmp_path):
    write_png(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "l.txt").write_text("a.png 42\na.png 7\na.png 19\na.png 7\n")
    ds = ImageNetDataset(str(tmp_path), str(tmp_path / "l.txt"), relabel=True, class_num=3)
    assert ds.labels.tolist() == [2, 0, 1, 0]


def test_custom_delimiter(tmp_path):
    write_png(tmp_path / "a b.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "l.txt").write_text("a b.png,3\n")
    ds = ImageNetDataset(str(tmp_path), str(tmp_path / "l.txt"), delimiter=",")
    assert ds.labels.tolist() == [3]


def test_digits_split_is_zero_shot_disjoint_and_seeded():
    train = DigitsDataset("train")
    q, g = DigitsDataset("query", split_seed=3), DigitsDataset("gallery", split_seed=3)
    assert set(train.labels.tolist()) == {0, 1, 2, 3, 4}
    assert set(q.labels.tolist()) == set(g.labels.tolist()) == {5, 6, 7, 8, 9}
    images, labels = load_digits_arrays()
    assert len(train) + len(q) + len(g) == len(labels) == 1797
    assert 0.25 < len(q) / (len(q) + len(g)) < 0.35
    q_again = DigitsDataset("query", split_seed=3)
    np.testing.assert_array_equal(q.images, q_again.images)
    assert not np.array_equal(DigitsDataset("query", split_seed=4).images, q.images)
    img, label = train[0]
    assert img.shape == (1, 8, 8) and img.dtype == np.float32 and 0.0 <= img.min() <= img.max() <= 1.0


def test_digits_without_scikit_learn_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ConfigError, match="pip install scikit-learn"):
        DigitsDataset("train")


def test_digits_random_shift_moves_pixels_within_bounds():
    np.random.seed(0)
    ds = DigitsDataset("train", random_shift=1)
    img, _ = ds[3]
    assert img.shape == (1, 8, 8)
    assert not all(np.array_equal(ds[3][0], ds.images[3]) for _ in range(10))


def test_normalize_scale_is_numeric_arithmetic_never_eval():
    op = NormalizeImage(scale="1.0/255.0", mean=[0, 0, 0], std=[1, 1, 1], order="")
    out = op(np.full((2, 2, 3), 255, np.uint8))
    np.testing.assert_allclose(out, 1.0, rtol=1e-6)
    with pytest.raises(ConfigError, match="not numeric"):
        NormalizeImage(scale="__import__('os').getcwd()")


def test_image_ops_shapes(tmp_path):
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (10, 20, 3), dtype=np.uint8)).save(buf, "PNG")
    img = DecodeImage()(buf.getvalue())
    assert img.shape == (10, 20, 3)
    assert ResizeImage(size=8)(img).shape == (8, 8, 3)
    assert ResizeImage(resize_short=5)(img).shape == (5, 10, 3)
    assert Pad(padding=2)(img).shape == (14, 24, 3)
    assert RandCropImage(size=6)(img).shape == (6, 6, 3)
    flipped = [RandFlipImage(1)(img) for _ in range(20)]
    assert any(np.array_equal(f, img[:, ::-1]) for f in flipped) and any(np.array_equal(f, img) for f in flipped)
    assert ToCHWImage()(img).shape == (3, 10, 20)


def test_unknown_transform_suggests_a_name():
    with pytest.raises(ConfigError, match="ResizeImage"):
        build_transforms([{"ResizeImg": {"size": 3}}])


def test_synthetic_classes_dataset_covers_every_class_with_seeded_images():
    from paddle_losses.engine.data import SyntheticClassesDataset
    ds = SyntheticClassesDataset(class_num=5, samples_per_class=3, seed=1)
    assert len(ds) == 15 and ds.labels.tolist() == [c for c in range(5) for _ in range(3)]
    image, label = ds[7]
    assert image.shape == (1, 8, 8) and image.dtype == np.float32 and label == 2
    np.testing.assert_array_equal(image, SyntheticClassesDataset(5, 3, seed=1)[7][0])
    assert not np.array_equal(image, SyntheticClassesDataset(5, 3, seed=2)[7][0])


def test_synthetic_classes_dataset_takes_the_heads_class_num_and_rejects_nonsense():
    ds = build_dataset({"name": "SyntheticClassesDataset"}, "DataLoader.Train.dataset", class_num=4)
    assert sorted(set(ds.labels.tolist())) == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="class_num and samples_per_class must be positive"):
        build_dataset({"name": "SyntheticClassesDataset", "samples_per_class": 0}, "p", class_num=4)
