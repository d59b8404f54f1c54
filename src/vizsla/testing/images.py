"""Small generated image folders for tests: learnable classes, broken files and odd-but-valid formats."""

from __future__ import annotations

import colorsys
import functools
import io
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

# Value add_broken_files gives a readable file (never part of a BadImageError reason).
READABLE = "good"


def _class_image(class_index: int, num_classes: int, size: tuple[int, int],
                 rng: np.random.Generator) -> Image.Image:
    """A class-coloured striped image with per-image noise, so a tiny model can tell classes apart."""
    width, height = size
    hue = class_index / max(num_classes, 1)
    base = np.array(colorsys.hsv_to_rgb(hue, 0.8, 0.9)) * 255.0
    period = 4 + 2 * (class_index % 4)
    axis = np.arange(width) if class_index % 2 == 0 else np.arange(height)
    phase = int(rng.integers(0, period))
    stripes = ((axis + phase) // (period // 2)) % 2
    stripes = stripes[None, :] if class_index % 2 == 0 else stripes[:, None]
    pixels = np.broadcast_to(base, (height, width, 3)) * (0.6 + 0.4 * stripes[..., None])
    pixels = pixels * rng.uniform(0.85, 1.15) + rng.normal(0.0, 8.0, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def make_image_folder(
    root: Path,
    *,
    classes: Sequence[str] = ("cat", "dog"),
    per_class: int = 6,
    splits: Sequence[str] = ("train", "valid", "test"),
    size: tuple[int, int] = (40, 32),
    seed: int = 0,
) -> Path:
    """Write ROOT/<split>/<class>/<n>.jpg|png (or ROOT/<class>/... when splits is empty) and return ROOT.

    Images alternate JPEG and PNG; size is (width, height). The same seed gives the same bytes.
    """
    root = Path(root)
    split_dirs = [root / name for name in splits] or [root]
    for split_index, split_dir in enumerate(split_dirs):
        for class_index, name in enumerate(classes):
            folder = split_dir / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                rng = np.random.default_rng([seed, split_index, class_index, i])
                image = _class_image(class_index, len(classes), size, rng)
                if i % 2 == 0:
                    image.save(folder / f"{name}_{i:03d}.jpg", "JPEG", quality=92)
                else:
                    image.save(folder / f"{name}_{i:03d}.png", "PNG")
    return root


def _noise(size: tuple[int, int], mode: str = "RGB", seed: int = 1) -> Image.Image:
    width, height = size
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    data = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(data[..., 0] if channels == 1 else data, mode)


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


@functools.lru_cache(maxsize=2)
def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A real, valid 1-bit PNG of width x height black pixels: ~50 KB on disk, 1.2 GB once decoded to RGB."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row * 1000) for _ in range(height // 1000)]
    parts += [compressor.compress(row * (height % 1000)), compressor.flush()]
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def _bad_crc_png() -> bytes:
    """A PNG whose IDAT checksum is wrong (pixel data intact): libpng rejects it, Pillow's load() does not."""
    data = bytearray(_encode(_noise((40, 32)), "PNG"))
    start = data.find(b"IDAT")
    length = struct.unpack(">I", data[start - 4 : start])[0]
    data[start + 4 + length] ^= 0xFF
    return bytes(data)


def _broken_files() -> dict[str, tuple[bytes, str]]:
    """Files no decoder should accept, each with the keyword its BadImageError reason contains."""
    jpeg = _encode(_noise((64, 48)), "JPEG", quality=95)
    return {
        "truncated.jpg": (jpeg[: len(jpeg) * 6 // 10], "truncated"),
        "empty.jpg": (b"", "zero-byte"),
        "text_renamed.jpg": (b"this is a text file, not a photo\n" * 8, "not an image"),
        "notes.txt": (b"labels were checked by hand\n", "not an image"),
        "bad_crc.png": (_bad_crc_png(), "corrupt"),
        "bomb.png": (bomb_png(), "decompression bomb"),
    }


def _exif_rotated_jpeg() -> bytes:
    """A 48x24 (w x h) JPEG, left half red, with EXIF orientation 6: displayed as 24x48, red on top."""
    pixels = np.zeros((24, 48, 3), np.uint8)
    pixels[:, :24] = (220, 20, 20)
    pixels[:, 24:] = (20, 20, 220)
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(Image.fromarray(pixels), "JPEG", quality=95, exif=exif.tobytes())


def _gray16_png() -> bytes:
    """A 16-bit grayscale horizontal gradient spanning 0..65535."""
    ramp = np.linspace(0, 65535, 64).round().astype(np.uint16)
    return _encode(Image.fromarray(np.tile(ramp, (16, 1))), "PNG")


def _palette_transparent_png() -> bytes:
    """A palette PNG whose left half is index 0, declared fully transparent."""
    image = Image.new("P", (32, 16), 1)
    image.putpalette([0, 0, 0, 30, 160, 30] + [0] * 762)
    image.paste(0, (0, 0, 16, 16))
    return _encode(image, "PNG", transparency=0)


def _rgba_png() -> bytes:
    """Opaque blue on the left, fully transparent black on the right."""
    pixels = np.zeros((16, 32, 4), np.uint8)
    pixels[:, :16] = (0, 0, 255, 255)
    return _encode(Image.fromarray(pixels, "RGBA"), "PNG")


def _gif() -> bytes:
    frames = [Image.new("P", (30, 20), i) for i in (1, 2)]
    for frame in frames:
        frame.putpalette([0, 0, 0, 250, 200, 0, 0, 200, 250] + [0] * 759)
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def _readable_odd_files() -> dict[str, bytes]:
    """Valid images in modes a naive convert('RGB') gets wrong or that torchvision cannot read."""
    cmyk = Image.new("CMYK", (32, 24), (0, 255, 255, 0))  # pure red in CMYK
    float_image = Image.fromarray(np.tile(np.linspace(0.0, 1.0, 32, dtype=np.float32), (8, 1)), "F")
    return {
        "cmyk.jpg": _encode(cmyk, "JPEG", quality=95),
        "gray16.png": _gray16_png(),
        "rgba.png": _rgba_png(),
        "palette_transparent.png": _palette_transparent_png(),
        "gray.jpg": _encode(_noise((32, 24), "L"), "JPEG", quality=90),
        "exif_rotated.jpg": _exif_rotated_jpeg(),
        "animated.gif": _gif(),
        "one_bit.png": _encode(Image.new("1", (16, 16), 1), "PNG"),
        "float.tif": _encode(float_image, "TIFF"),
    }


def add_broken_files(folder: Path) -> dict[str, str]:
    """Add broken and odd-but-readable files to FOLDER; return file name -> expected reason keyword.

    The keyword is a substring of the BadImageError reason, or READABLE ("good") for files that must decode.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}
    for name, (data, keyword) in _broken_files().items():
        (folder / name).write_bytes(data)
        expected[name] = keyword
    for name, data in _readable_odd_files().items():
        (folder / name).write_bytes(data)
        expected[name] = READABLE
    return expected
