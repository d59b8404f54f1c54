"""decode_image: every odd format to RGB uint8 with the right pixels; every bad file to a BadImageError."""

from __future__ import annotations

import io
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from vizsla.data.decode import BadImageError, decode_image, read_and_decode
from vizsla.testing.images import READABLE, add_broken_files, bomb_png

LIMIT = 89_478_485


def _decode(folder: Path, name: str, **kwargs: object) -> np.ndarray:
    image = read_and_decode(folder / name, max_pixels=LIMIT, **kwargs)
    assert image.mode == "RGB"
    pixels = np.asarray(image)
    assert pixels.dtype == np.uint8 and pixels.shape == (image.height, image.width, 3)
    return pixels


def _jpeg(width: int, height: int) -> bytes:
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = np.stack([xx * 255 // width, yy * 255 // height, np.full_like(xx, 128)], -1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_every_readable_odd_format_decodes(broken_folder):
    folder, expected = broken_folder
    readable = [name for name, keyword in expected.items() if keyword == READABLE]
    assert len(readable) >= 9
    for name in readable:
        _decode(folder, name)


def test_cmyk_jpeg_becomes_red(broken_folder):
    pixels = _decode(broken_folder[0], "cmyk.jpg").astype(int)
    assert np.abs(pixels.mean(axis=(0, 1)) - [255, 0, 0]).max() < 8


def test_16_bit_gradient_keeps_its_range(broken_folder):
    row = _decode(broken_folder[0], "gray16.png")[0, :, 0].astype(int)
    assert row.max() > 200 and row.min() < 10
    assert not (row == 255).all() and (row == 255).sum() < 4
    assert (np.diff(row) >= 0).all()


def test_float_image_spans_0_to_255(broken_folder):
    row = _decode(broken_folder[0], "float.tif")[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and (np.diff(row) >= 0).all()


def test_rgba_is_composited_on_white(broken_folder):
    pixels = _decode(broken_folder[0], "rgba.png")
    assert (pixels[:, :16] == [0, 0, 255]).all()
    assert (pixels[:, 16:] == [255, 255, 255]).all()


def test_palette_transparency_is_composited_on_white(broken_folder):
    pixels = _decode(broken_folder[0], "palette_transparent.png")
    assert (pixels[:, :16] == [255, 255, 255]).all()
    assert (pixels[:, 16:] == [30, 160, 30]).all()


def test_grayscale_one_bit_and_gif_become_rgb(broken_folder):
    folder = broken_folder[0]
    gray = _decode(folder, "gray.jpg")
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert (_decode(folder, "one_bit.png") == 255).all()
    assert (_decode(folder, "animated.gif") == [250, 200, 0]).all()  # first frame


def test_exif_orientation_is_applied(broken_folder):
    pixels = _decode(broken_folder[0], "exif_rotated.jpg").astype(int)
    assert pixels.shape[:2] == (48, 24)  # stored 48 wide x 24 high, orientation 6 = rotate 90 degrees
    top, bottom = pixels[:24].mean(axis=(0, 1)), pixels[24:].mean(axis=(0, 1))
    assert top[0] > 180 and top[2] < 60  # the red left half is now on top
    assert bottom[2] > 180 and bottom[0] < 60


@pytest.mark.parametrize(
    "name", ["truncated.jpg", "empty.jpg", "text_renamed.jpg", "notes.txt", "bad_crc.png", "bomb.png"]
)
def test_broken_file_gives_its_reason(broken_folder, name):
    folder, expected = broken_folder
    with pytest.raises(BadImageError) as info:
        read_and_decode(folder / name, max_pixels=LIMIT)
    assert expected[name] != READABLE and expected[name] in info.value.reason


def test_expected_reasons_are_the_real_ones(tmp_path):
    expected = add_broken_files(tmp_path)
    for name, keyword in expected.items():
        try:
            read_and_decode(tmp_path / name, max_pixels=LIMIT)
            reason = READABLE
        except BadImageError as exc:
            reason = exc.reason
        assert (reason == READABLE) if keyword == READABLE else (keyword in reason), (name, reason)


def test_bomb_guard_rejects_before_decoding(monkeypatch):
    def fail_load(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", fail_load)
    with pytest.raises(BadImageError) as info:
        decode_image(bomb_png(8000, 8000), max_pixels=1_000_000)
    assert info.value.reason == "decompression bomb: 8000x8000 px > limit 1000000"


@pytest.mark.parametrize("side", [10_000, 20_000])  # Pillow's warning level, then its error level
def test_pillow_bomb_checks_become_bad_images_without_leaking_filters(side):
    filters = list(warnings.filters)
    with pytest.raises(BadImageError, match="decompression bomb"):
        decode_image(bomb_png(side, side), max_pixels=10**12)
    assert warnings.filters == filters
    assert Image.MAX_IMAGE_PIXELS == LIMIT and ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_concurrent_decodes_leave_global_state_as_it_was(broken_folder):
    folder, expected = broken_folder
    filters = list(warnings.filters)
    names = list(expected) * 4

    def work() -> None:
        for name in names:
            try:
                read_and_decode(folder / name, max_pixels=LIMIT)
            except BadImageError:
                pass

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert warnings.filters == filters


def test_oversized_metadata_chunk_is_a_bad_image():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    data = buffer.getvalue()
    payload = b"Comment\x00\x00" + zlib.compress(b"a" * 3_000_000)
    chunk = len(payload).to_bytes(4, "big") + b"zTXt" + payload
    chunk += zlib.crc32(b"zTXt" + payload).to_bytes(4, "big")
    at = data.find(b"IDAT") - 4
    with pytest.raises(BadImageError, match="oversized metadata chunk"):
        decode_image(data[:at] + chunk + data[at:], max_pixels=LIMIT)


def test_draft_decodes_large_jpegs_at_reduced_scale():
    data = _jpeg(1600, 1200)
    assert decode_image(data, max_pixels=LIMIT).size == (1600, 1200)
    assert decode_image(data, max_pixels=LIMIT, draft_size=200).size == (400, 300)  # 1/4: both sides >= 200
    assert decode_image(_jpeg(300, 200), max_pixels=LIMIT, draft_size=200).size == (300, 200)  # < 2x: full


def test_truncated_jpeg_is_bad_with_draft_too():
    data = _jpeg(1600, 1200)
    with pytest.raises(BadImageError, match="truncated"):
        decode_image(data[: len(data) // 2], max_pixels=LIMIT, draft_size=200)


def test_missing_file_is_a_bad_image(tmp_path):
    with pytest.raises(BadImageError, match="cannot read file"):
        read_and_decode(tmp_path / "gone.jpg", max_pixels=LIMIT)
