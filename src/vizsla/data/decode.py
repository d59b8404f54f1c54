"""Safe image decoding with Pillow: any bad input becomes a BadImageError, every good one 8-bit RGB.

torchvision.io.decode_image is not used: it crashes the process on some corrupt PNGs and has no
decompression-bomb guard. Pillow opens lazily, so the pixel count is checked before any pixel is decoded.
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I;16S"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_DRAFT_FORMATS = {"JPEG", "MPO"}  # MPO: multi-picture JPEGs from phones and cameras
_BOMB_FILTER = ("error", None, Image.DecompressionBombWarning, None, 0)
_filter_lock = threading.Lock()
_filter_users = 0
_filter_owned = False  # False when the caller had already installed the same filter: then leave it


class BadImageError(Exception):
    """A file that cannot be used as a training image; `reason` says why in a few words."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@contextlib.contextmanager
def _bomb_warnings_as_errors() -> Iterator[None]:
    """Turn DecompressionBombWarning into an error while any decode runs, then restore the filters.

    warnings.catch_warnings() is not thread-safe (concurrent exits can leave a filter installed for good),
    so decoding threads share one reference-counted filter instead.
    """
    global _filter_users, _filter_owned
    with _filter_lock:
        if _filter_users == 0:
            _filter_owned = _BOMB_FILTER not in warnings.filters
            if _filter_owned:
                warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
        _filter_users += 1
    try:
        yield
    finally:
        with _filter_lock:
            _filter_users -= 1
            if _filter_users == 0 and _filter_owned and _BOMB_FILTER in warnings.filters:
                warnings.filters.remove(_BOMB_FILTER)


def _reason_for(exc: BaseException) -> str:
    """Map a decoder exception to a short human reason."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (cannot identify format)"
    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return f"decompression bomb: {text}"
    if isinstance(exc, MemoryError):
        return "out of memory while decoding"
    if isinstance(exc, ValueError) and ("too large" in text.lower() or "text chunks" in text):
        return f"oversized metadata chunk: {text}"
    return f"truncated or corrupt image data: {text}"


def _check_size(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise BadImageError(f"invalid image size {width}x{height}")
    if width * height > max_pixels:
        raise BadImageError(f"decompression bomb: {width}x{height} px > limit {max_pixels}")


def _verify_png_checksums(data: bytes) -> None:
    """Check every PNG chunk CRC: Pillow's load() skips the IDAT ones that libpng enforces."""
    with Image.open(io.BytesIO(data)) as image:
        image.verify()


def _scaled_to_uint8(values: np.ndarray, low: float, high: float) -> Image.Image:
    scale = 255.0 / (high - low) if high > low else 0.0
    return Image.fromarray(np.clip((values - low) * scale, 0, 255).round().astype(np.uint8), "L")


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit integer and float grayscale to 8 bit without clipping."""
    values = np.asarray(image).astype(np.float64)
    if image.mode in _SIXTEEN_BIT_MODES:
        return _scaled_to_uint8(values, 0.0, 65535.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode == "F" and low >= 0.0 and high <= 1.0:
        return _scaled_to_uint8(values, 0.0, 1.0)
    if image.mode == "I" and low >= 0 and high <= 255:
        return _scaled_to_uint8(values, 0.0, 255.0)
    if image.mode == "I" and low >= 0 and high <= 65535:
        return _scaled_to_uint8(values, 0.0, 65535.0)  # 16-bit data in a 32-bit container (TIFF, old PNG)
    return _scaled_to_uint8(values, low, high)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparent pixels become white."""
    if image.mode in _SIXTEEN_BIT_MODES or image.mode in {"I", "F"}:
        image = _high_depth_to_l(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise BadImageError(f"unsupported colour mode {image.mode}") from exc


def _decode(data: bytes, max_pixels: int, draft_size: int | None) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    _check_size(image, max_pixels)
    if draft_size and image.format in _DRAFT_FORMATS and min(image.size) >= 2 * draft_size:
        image.draft("RGB", (draft_size, draft_size))  # DCT-domain downscale: decodes 2-8x faster
    image.load()
    if image.format == "PNG":
        _verify_png_checksums(data)
    image = ImageOps.exif_transpose(image)
    return _to_rgb(image)


def decode_image(data: bytes, *, max_pixels: int, draft_size: int | None = None) -> Image.Image:
    """Decode image bytes to an 8-bit RGB PIL image (EXIF orientation applied) or raise BadImageError.

    `draft_size`: JPEGs at least twice this size on their shorter side are decoded at a reduced scale
    that keeps both sides >= draft_size.
    """
    if not data:
        raise BadImageError("zero-byte file")
    try:
        with _bomb_warnings_as_errors():
            return _decode(data, max_pixels, draft_size)
    except BadImageError:
        raise
    except (
        OSError, ValueError, SyntaxError, TypeError, KeyError, IndexError, EOFError, ZeroDivisionError,
        MemoryError, OverflowError, RuntimeError, AttributeError, AssertionError, struct.error, zlib.error,
        Image.DecompressionBombError, Image.DecompressionBombWarning,
    ) as exc:
        raise BadImageError(_reason_for(exc)) from exc


def read_and_decode(path: Path, *, max_pixels: int, draft_size: int | None = None) -> Image.Image:
    """Read a file and decode it; an unreadable, empty or undecodable file raises BadImageError."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadImageError(f"cannot read file: {exc.strerror or exc}") from exc
    return decode_image(data, max_pixels=max_pixels, draft_size=draft_size)
