"""The digits quick-start dataset written from scikit-learn's bundled 8x8 scans."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vizsla.data.digits import CLASSES, SPLITS, create_digits, render_digit
from vizsla.errors import DataError

TOTAL = 1797


def _files(root: Path) -> dict[str, list[str]]:
    """Split -> sorted 'class/name' of its PNG files."""
    return {s: sorted(p.relative_to(root / s).as_posix() for p in (root / s).rglob("*.png")) for s in SPLITS}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """One dataset with the default parameters, shared by the read-only tests."""
    out = tmp_path_factory.mktemp("digits") / "digits"
    return out, create_digits(out)


def test_counts_cover_every_image_once(digits):
    out, counts = digits
    assert set(counts) == set(SPLITS)
    assert sum(sum(per_class.values()) for per_class in counts.values()) == TOTAL
    files = _files(out)
    for split, per_class in counts.items():
        assert len(files[split]) == sum(per_class.values())
    names = [Path(f).name for split in SPLITS for f in files[split]]
    assert len(set(names)) == TOTAL  # no image in two splits
    assert json.loads((out / "dataset.json").read_text())["counts"] == counts


def test_every_split_has_all_classes_in_proportion(digits):
    from sklearn.datasets import load_digits

    _, counts = digits
    per_class_total = np.bincount(load_digits().target, minlength=10)
    for split, fraction in zip(SPLITS, (0.7, 0.15, 0.15), strict=True):
        assert sorted(counts[split]) == list(CLASSES)
        for cls in CLASSES:
            expected = fraction * per_class_total[int(cls)]
            assert counts[split][cls] > 0
            assert abs(counts[split][cls] - expected) <= 2, (split, cls, counts[split][cls], expected)


def test_files_sit_in_their_class_folder(digits):
    from sklearn.datasets import load_digits

    out, _ = digits
    target = load_digits().target
    for split, files in _files(out).items():
        for rel in files:
            cls, name = rel.split("/")
            index = int(name.removeprefix("digit_").removesuffix(".png"))
            assert target[index] == int(cls), (split, rel)


def test_images_are_8bit_grayscale_dark_ink_on_white(digits):
    out, _ = digits
    for path in sorted((out / "train" / "3").glob("*.png"))[:5]:
        with Image.open(path) as image:
            assert image.mode == "L" and image.size == (32, 32)
            pixels = np.asarray(image)
        assert pixels[0, 0] == 255  # the digits' borders are blank: white background
        assert pixels.min() < 64  # and the strokes are dark


def test_render_keeps_the_grey_levels():
    from sklearn.datasets import load_digits

    image = load_digits().images[0]
    rendered = np.asarray(render_digit(image, 8))
    assert rendered.dtype == np.uint8
    np.testing.assert_array_equal(rendered, 255 - np.rint(image * 255 / 16).astype(np.uint8))


def test_second_call_is_a_no_op(digits):
    out, counts = digits
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert create_digits(out) == counts
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamps


def test_seed_changes_the_split_and_size_the_images(digits, tmp_path):
    out, _ = digits
    other = tmp_path / "seed1"
    counts = create_digits(other, seed=1, size=16)
    assert sum(sum(c.values()) for c in counts.values()) == TOTAL
    assert _files(other)["train"] != _files(out)["train"]
    with Image.open(next((other / "valid" / "0").glob("*.png"))) as image:
        assert image.mode == "L" and image.size == (16, 16)


def test_refuses_other_content_unless_overwrite_and_same_seed_repeats(digits, tmp_path):
    fixture_out, fixture_counts = digits
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"busy is not empty\n.*--overwrite"):
        create_digits(out)
    assert create_digits(out, overwrite=True) == fixture_counts
    assert _files(out) == _files(fixture_out)  # same seed, same split
    assert (out / "notes.txt").read_text() == "mine"  # overwrite replaces only what it writes


def test_other_parameters_or_missing_files_need_overwrite(tmp_path):
    out = tmp_path / "d"
    create_digits(out, size=8)
    with pytest.raises(DataError, match=r"holds digits made with other parameters .*'size': 8"):
        create_digits(out, size=12)
    next((out / "train" / "5").glob("*.png")).unlink()
    with pytest.raises(DataError, match="or incomplete"):
        create_digits(out, size=8)
    create_digits(out, size=12, overwrite=True)
    assert json.loads((out / "dataset.json").read_text())["parameters"]["size"] == 12
    assert sum(len(f) for f in _files(out).values()) == TOTAL
    with Image.open(next((out / "test" / "9").glob("*.png"))) as image:
        assert image.size == (12, 12)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_a_file_in_the_way_is_refused_even_with_overwrite(tmp_path):
    (tmp_path / "d").write_text("a file")
    for overwrite in (False, True):
        with pytest.raises(DataError, match="is not a folder"):
            create_digits(tmp_path / "d", size=8, overwrite=overwrite)
    assert (tmp_path / "d").read_text() == "a file"


def test_two_way_split_when_a_fraction_is_zero(tmp_path):
    counts = create_digits(tmp_path / "d", size=8, fractions=(0.8, 0.2, 0.0))
    assert set(counts) == {"train", "valid"}
    assert not (tmp_path / "d" / "test").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 4}, "size must be an integer from 8"),
        ({"size": 2000}, "size must be an integer from 8"),
        ({"fractions": (0.5, 0.2, 0.2)}, "sum"),
        ({"fractions": (0.0, 0.5, 0.5)}, "sum"),
        ({"fractions": (0.99, 0.004, 0.006)}, "without every class"),
    ],
)
def test_bad_parameters_are_data_errors(tmp_path, kwargs, message):
    with pytest.raises(DataError, match=message):
        create_digits(tmp_path / "d", **kwargs)
    assert not (tmp_path / "d").exists()
