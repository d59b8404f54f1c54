"""serving/preprocess.py makes the pixels of the model's eval transform (data.transforms) without torch."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vizsla.data.transforms import create_transform
from vizsla.serving.preprocess import EvalTransform

INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "nearest-exact", "lanczos", "box", "hamming")
RECORDS = (
    ([3, 224, 224], 0.875, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ([3, 32, 32], 0.95, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
    ([3, 240, 200], 0.9, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),  # non-square: Resize((h, w))
    ([3, 64, 48], 1.0, [0.1, 0.2, 0.3], [0.9, 0.8, 0.7]),
)
SIZES = ((375, 500), (500, 333), (20, 30), (224, 224), (31, 900), (1, 1))  # (height, width)


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_equal_to_the_eval_transform_to_float32_rounding(interpolation: str):
    rng = np.random.default_rng(0)
    for size, crop_pct, mean, std in RECORDS:
        record = {
            "input_size": size,
            "mean": mean,
            "std": std,
            "interpolation": interpolation,
            "crop_pct": crop_pct,
        }
        reference = create_transform(record, train=False, augment=False, hflip=False)
        ours = EvalTransform(record)
        for height, width in SIZES:
            image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
            expected, got = reference(image).numpy(), ours(image)
            assert got.dtype == np.float32 and got.shape == expected.shape
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, err_msg=f"{record} {height}x{width}")


def test_bad_records_are_refused_by_name():
    base = {"input_size": [3, 8, 8], "mean": [0, 0, 0], "std": [1, 1, 1], "interpolation": "bilinear"}
    with pytest.raises(ValueError, match="interpolation"):
        EvalTransform({**base, "interpolation": "cubic-ish"})
    with pytest.raises(ValueError, match="std"):
        EvalTransform({**base, "std": [1, 0, 1]})
    with pytest.raises(ValueError, match="input_size"):
        EvalTransform({**base, "input_size": [1, 8, 8]})
