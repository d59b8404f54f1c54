"""The default input/output steps and user overrides, without a server."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from vizsla.errors import UserError
from vizsla.serving.errors import RequestError
from vizsla.serving.handler import (
    Handler,
    RequestContext,
    default_input_fn,
    default_output_fn,
    sniff,
)

PRE = {
    "input_size": [3, 16, 16],
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25],
    "interpolation": "bilinear",
    "crop_pct": 1.0,
}


def _ctx(**kw) -> RequestContext:
    return RequestContext(labels=["cat", "dog", "fox"], preprocessing=PRE, model_name="m", **kw)


def _image(fmt: str, size=(20, 24), color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "fmt,ctype",
    [
        ("JPEG", "image/jpeg"),
        ("PNG", "image/png"),
        ("WEBP", "image/webp"),
        ("JPEG", "application/x-image"),
        ("PNG", ""),
        ("WEBP", "application/octet-stream"),
    ],
)
def test_images_become_one_preprocessed_row(fmt, ctype):
    batch = default_input_fn(_image(fmt), ctype, _ctx())
    assert batch.shape == (1, 3, 16, 16) and batch.dtype == np.float32
    # red pixel normalised with mean 0.5 / std 0.25: R channel high, G/B low
    assert batch[0, 0].mean() > 1.0 and batch[0, 1].mean() < -1.0


def test_json_b64_instances_and_chw_lists():
    b64 = base64.b64encode(_image("PNG")).decode()
    chw = np.zeros((3, 16, 16), np.float32).tolist()
    body = json.dumps({"instances": [{"b64": b64}, b64, chw]}).encode()
    batch = default_input_fn(body, "application/json", _ctx())
    assert batch.shape == (3, 3, 16, 16)
    np.testing.assert_allclose(batch[0], batch[1])
    assert not batch[2].any()
    assert default_input_fn(json.dumps({"b64": b64}).encode(), "application/json", _ctx()).shape[0] == 1


def test_npy_float_batch_and_uint8_images():
    floats = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(default_input_fn(_npy(floats), "application/x-npy", _ctx()), floats)
    hwc = np.full((30, 20, 3), 255, np.uint8)
    assert default_input_fn(_npy(hwc), "application/x-npy", _ctx()).shape == (1, 3, 16, 16)


@pytest.mark.parametrize(
    "body,ctype,status,needle",
    [
        (b"hello", "text/plain", 415, "unsupported Content-Type"),
        (b"GIF89a....", "image/jpeg", 415, "not accepted"),
        (b"\xff\xd8\xff\xe0 broken", "image/jpeg", 400, "undecodable image"),
        (b"", "image/png", 400, "empty"),
        (b"{not json", "application/json", 400, "invalid JSON"),
        (
            json.dumps({"url": "http://example.com/a.jpg"}).encode(),
            "application/json",
            400,
            "URL fetching is off",
        ),
        (json.dumps({"b64": "***"}).encode(), "application/json", 400, "base64"),
        (b"\x00\x01binary", "", 415, "cannot tell"),
    ],
)
def test_bad_inputs_get_their_status(body, ctype, status, needle):
    with pytest.raises(RequestError) as info:
        default_input_fn(body, ctype, _ctx())
    assert info.value.status == status and needle in info.value.message


def test_npy_pickles_are_refused_and_wrong_shapes_explained():
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(RequestError, match="object arrays are refused"):
        default_input_fn(buffer.getvalue(), "application/x-npy", _ctx())
    with pytest.raises(RequestError, match=r"shape \[3, 16, 16\]"):
        default_input_fn(_npy(np.zeros((1, 3, 8, 8), np.float32)), "application/x-npy", _ctx())
    with pytest.raises(RequestError, match="limit is 2"):
        default_input_fn(_npy(np.zeros((3, 3, 16, 16), np.float32)), "application/x-npy", _ctx(max_images=2))


def test_decompression_bomb_is_a_400():
    big = _image("PNG", size=(2000, 2000))
    with pytest.raises(RequestError) as info:
        default_input_fn(big, "image/png", _ctx(max_pixels=1_000_000))
    assert info.value.status == 400 and "decompression bomb" in info.value.message


def test_sniffing():
    assert sniff(_image("JPEG")) == "image/jpeg" and sniff(_image("PNG")) == "image/png"
    assert sniff(_image("WEBP")) == "image/webp" and sniff(_npy(np.zeros(2))) == "application/x-npy"
    assert sniff(b' {"b64": 1}') == "application/json" and sniff(b"GIF89a") is None


def test_output_topk_full_npy_and_406():
    scores = np.array([[0.1, 0.7, 0.2]], np.float32)
    body, ctype = default_output_fn(scores, "", _ctx(topk=2))
    out = json.loads(body)
    assert ctype == "application/json"
    assert out["predictions"][0]["label"] == "dog"
    assert [t["label"] for t in out["predictions"][0]["topk"]] == ["dog", "fox"]
    assert "scores" not in out["predictions"][0]
    full = json.loads(default_output_fn(scores, "application/json;verbose=full", _ctx())[0])
    assert full["labels"] == ["cat", "dog", "fox"]
    assert full["predictions"][0]["scores"] == pytest.approx([0.1, 0.7, 0.2])
    body, ctype = default_output_fn(scores, "text/html, application/x-npy", _ctx())
    assert ctype == "application/x-npy"
    np.testing.assert_array_equal(np.load(io.BytesIO(body)), scores)
    with pytest.raises(RequestError) as info:
        default_output_fn(scores, "text/csv", _ctx())
    assert info.value.status == 406


def test_handler_file_overrides_only_what_it_defines(tmp_path):
    path = tmp_path / "inference.py"
    path.write_text(
        "import json\n\ndef output_fn(prediction, accept):\n"
        "    return json.dumps({'n': len(prediction)}), 'application/vnd.test+json'\n"
    )
    handler = Handler(path)
    assert handler.custom == {"output_fn"} and handler.default_predict
    assert handler.output(np.zeros((2, 3)), "application/json", _ctx()) == (
        b'{"n": 2}',
        "application/vnd.test+json",
    )
    assert handler.input(_image("PNG"), "image/png", _ctx()).shape == (1, 3, 16, 16)


def test_handler_context_argument_and_bad_files(tmp_path):
    with_ctx = tmp_path / "ctx.py"
    with_ctx.write_text("def output_fn(prediction, accept, context):\n    return context.labels[0]\n")
    assert Handler(with_ctx).output([1], "text/plain", _ctx()) == (b"cat", "text/plain")
    bad_arity = tmp_path / "bad.py"
    bad_arity.write_text("def input_fn(body):\n    return body\n")
    with pytest.raises(UserError, match="must take 2 arguments"):
        Handler(bad_arity)
    both = tmp_path / "both.py"
    both.write_text("def transform_fn(m, d, c, a):\n    pass\n\ndef input_fn(b, c):\n    pass\n")
    with pytest.raises(UserError, match="transform_fn together"):
        Handler(both)
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(UserError, match="failed to import.*boom"):
        Handler(broken)
    with pytest.raises(UserError, match="not found"):
        Handler(tmp_path / "missing.py")
