"""The model's eval transform in Pillow + numpy: the same pixels as vizsla.data.transforms, without torch.

`create_transform(train=False)` is torchvision's Resize -> CenterCrop on a PIL image, then
ToNormalizedTensor ((pixel - 255 mean) / (255 std) in float32). On a PIL image torchvision's Resize and
CenterCrop *are* Pillow's resize and crop, so this module calls Pillow with the same sizes, anchors and
filter, then maps every uint8 value through a per-channel table computed with the same float32 arithmetic.
tests/serving/test_preprocess.py holds both to float32 rounding (1e-6) on images of many sizes, every
interpolation and several records.

Why a second spelling of one transform: importing torch + torchvision costs 3-6 s, most of `vizsla serve`'s
start-up budget (a head-only model is served without torch), and a lookup table costs less per request than
the tensor conversions. It reads the model's one preprocessing record, and the test keeps the two equal.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vizsla.data.transforms import eval_resize_size

# torchvision.transforms.InterpolationMode value -> Pillow filter (torchvision's pil_modes_mapping)
_PIL_FILTERS = {
    "nearest": 0,  # Image.NEAREST
    "nearest-exact": 0,
    "lanczos": 1,  # Image.LANCZOS
    "bilinear": 2,  # Image.BILINEAR
    "bicubic": 3,  # Image.BICUBIC
    "box": 4,  # Image.BOX
    "hamming": 5,  # Image.HAMMING
}


def resized_size(height: int, width: int, size: int | tuple[int, int]) -> tuple[int, int]:
    """(H, W) after torchvision's Resize(SIZE): an int sets the shorter side, the other keeps the ratio."""
    if not isinstance(size, int):
        return int(size[0]), int(size[1])
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def crop_box(height: int, width: int, crop_h: int, crop_w: int) -> tuple[int, int, int, int]:
    """Pillow's (left, top, right, bottom) of torchvision's CenterCrop, padding with black where too small."""
    pad_left = (crop_w - width) // 2 if crop_w > width else 0
    pad_top = (crop_h - height) // 2 if crop_h > height else 0
    padded_h = height + pad_top + ((crop_h - height + 1) // 2 if crop_h > height else 0)
    padded_w = width + pad_left + ((crop_w - width + 1) // 2 if crop_w > width else 0)
    top = int(round((padded_h - crop_h) / 2.0)) - pad_top
    left = int(round((padded_w - crop_w) / 2.0)) - pad_left
    return left, top, left + crop_w, top + crop_h


class EvalTransform:
    """PIL RGB image -> normalized float32 array (3, H, W), as the model's eval transform makes it."""

    def __init__(self, preprocessing: dict[str, Any]) -> None:
        size = [int(v) for v in preprocessing["input_size"]]
        if len(size) != 3 or size[0] != 3:
            raise ValueError(f"preprocessing input_size must be [3, H, W] (RGB), got {size}")
        self.height, self.width = size[1], size[2]
        self.resize = eval_resize_size(preprocessing)
        name = str(preprocessing.get("interpolation", "bilinear")).lower()
        if name not in _PIL_FILTERS:
            raise ValueError(
                f"unknown interpolation {name!r} in preprocessing; use one of {', '.join(_PIL_FILTERS)}"
            )
        self.resample = _PIL_FILTERS[name]
        mean = [float(v) for v in preprocessing["mean"]]
        std = [float(v) for v in preprocessing["std"]]
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"preprocessing mean/std must be 3 values (std > 0), got {mean} / {std}")
        # data.transforms.ToNormalizedTensor's float32 arithmetic: (pixel - 255 mean) * (1 / (255 std))
        offset = np.asarray([255.0 * m for m in mean], np.float32)[:, None]
        scale = np.asarray([1.0 / (255.0 * s) for s in std], np.float32)[:, None]
        self.table = (np.arange(256, dtype=np.float32)[None, :] - offset) * scale  # (3, 256) float32

    def __call__(self, image: Any) -> np.ndarray:
        new_h, new_w = resized_size(image.height, image.width, self.resize)
        if (new_h, new_w) != (image.height, image.width):
            image = image.resize((new_w, new_h), resample=self.resample)
        box = crop_box(image.height, image.width, self.height, self.width)
        if box != (0, 0, image.width, image.height):
            image = image.crop(box)  # Pillow fills outside the image with black, as torchvision's padding
        pixels = np.asarray(image)
        if pixels.shape != (self.height, self.width, 3):
            raise ValueError(f"expected an RGB image, got an array of shape {pixels.shape}")
        out = np.empty((3, self.height, self.width), np.float32)
        for channel in range(3):
            np.take(self.table[channel], pixels[:, :, channel], out=out[channel])
        return out
