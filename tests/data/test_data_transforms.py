"""create_transform: shapes, normalisation, eval determinism, seeded augmentation, flips on request."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vizsla.data import create_transform
from vizsla.data.transforms import draft_size_for, eval_resize_size


def _halves(width: int = 64, height: int = 48) -> Image.Image:
    """Red left half, blue right half: tells a flip from no flip."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = (255, 0, 0)
    pixels[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(pixels)


def test_eval_transform_shape_and_normalisation(preprocessing):
    transform = create_transform(preprocessing, train=False, augment=False, hflip=False)
    out = transform(Image.new("RGB", (50, 40), (128, 64, 255)))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32 and type(out) is torch.Tensor
    expected = [(v / 255 - m) / s for v, m, s in zip((128, 64, 255), preprocessing["mean"],
                                                       preprocessing["std"], strict=True)]
    assert torch.allclose(out.mean(dim=(1, 2)), torch.tensor(expected), atol=1e-4)


def test_eval_transform_is_deterministic_and_train_without_augment_is_eval(preprocessing):
    image = _halves()
    evaluate = create_transform(preprocessing, train=False, augment=True, hflip=True)
    plain_train = create_transform(preprocessing, train=True, augment=False, hflip=True)
    assert torch.equal(evaluate(image), evaluate(image))
    assert torch.equal(evaluate(image), plain_train(image))


def test_augmentation_is_random_but_seeded(preprocessing):
    transform = create_transform(preprocessing, train=True, augment=True, hflip=True)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8))
    torch.manual_seed(5)
    first = transform(image)
    torch.manual_seed(5)
    assert torch.equal(first, transform(image))
    assert not torch.equal(first, transform(image))


@pytest.mark.parametrize("hflip", [False, True])
def test_hflip_only_when_asked(preprocessing, hflip):
    transform = create_transform(preprocessing, train=True, augment=True, hflip=hflip)
    torch.manual_seed(0)
    left_is_red = []
    for _ in range(20):
        out = transform(_halves())
        left_is_red.append(bool(out[0, :, 0].mean() > out[2, :, 0].mean()))
    assert all(left_is_red) if not hflip else (any(left_is_red) and not all(left_is_red))


def test_non_square_input_size(preprocessing):
    preprocessing["input_size"] = [3, 32, 48]
    for train in (False, True):
        out = create_transform(preprocessing, train=train, augment=True, hflip=True)(_halves(100, 90))
        assert out.shape == (3, 32, 48)


def test_resize_and_draft_sizes():
    record = {"input_size": [3, 224, 224], "mean": [0.5] * 3, "std": [0.5] * 3, "crop_pct": 0.875}
    assert eval_resize_size(record) == 256
    assert draft_size_for(record) == 317  # 224 / sqrt(0.5): the smallest train crop keeps full detail
    assert draft_size_for({**record, "crop_pct": 0.5}) == 448


@pytest.mark.parametrize(
    ("change", "message"),
    [({"input_size": [1, 32, 32]}, "RGB"), ({"interpolation": "cubic-ish"}, "unknown interpolation"),
     ({"std": [0.2, 0.2]}, "mean/std")],
)
def test_bad_preprocessing_records(preprocessing, change, message):
    with pytest.raises(ValueError, match=message):
        create_transform({**preprocessing, **change}, train=False, augment=False, hflip=False)


def test_fused_normalisation_equals_torchvisions_chain():
    import numpy as np
    import torch
    from PIL import Image
    from torchvision.transforms import v2

    from vizsla.data.transforms import ToNormalizedTensor

    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    pixels = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    reference = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std),
                            v2.ToPureTensor()])(image)
    fused = ToNormalizedTensor(mean, std)(image)
    assert fused.shape == (3, 37, 53) and fused.dtype == torch.float32 and fused.is_contiguous()
    assert float((fused - reference).abs().max()) < 1e-5
