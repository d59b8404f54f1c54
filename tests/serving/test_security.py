"""Auth (API keys, SigV4 recomputed with botocore) and the image-URL guard."""

from __future__ import annotations

import http.server
import threading

import pytest

from vizsla.serving.errors import RequestError
from vizsla.serving.security import UrlFetcher, check_auth

URL = "http://127.0.0.1:8080/endpoints/m/invocations"


def _signed(body: bytes, key: str = "AKIDTEST", secret: str = "s3cret", region: str = "us-east-1") -> dict:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="POST", url=URL, data=body, headers={"Content-Type": "image/jpeg"})
    SigV4Auth(Credentials(key, secret), "sagemaker", region).add_auth(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers["host"] = "127.0.0.1:8080"
    return headers


def _auth(headers: dict, body: bytes = b"x", **kw) -> None:
    options = {"api_keys": [], "sigv4": {}, "max_skew_s": 900.0, **kw}
    check_auth("POST", URL, headers, body, **options)


def test_api_keys():
    _auth({"x-api-key": "k1"}, api_keys=["k1", "k2"])
    _auth({"authorization": "Bearer k2"}, api_keys=["k1", "k2"])
    with pytest.raises(RequestError) as missing:
        _auth({}, api_keys=["k1"])
    assert missing.value.status == 401
    with pytest.raises(RequestError) as wrong:
        _auth({"x-api-key": "nope"}, api_keys=["k1"])
    assert wrong.value.status == 403


def test_sigv4_signature_is_recomputed():
    body = b"\xff\xd8\xff image bytes"
    _auth(_signed(body), body, sigv4={"AKIDTEST": "s3cret"})
    cases = [
        (_signed(body), b"tampered", {"AKIDTEST": "s3cret"}, "does not match"),
        (_signed(body, secret="other"), body, {"AKIDTEST": "s3cret"}, "does not match"),
        (_signed(body, key="AKIDELSE"), body, {"AKIDTEST": "s3cret"}, "not known"),
    ]
    for headers, sent, keys, needle in cases:
        with pytest.raises(RequestError, match=needle) as info:
            _auth(headers, sent, sigv4=keys)
        assert info.value.status == 403
    stale = _signed(body)
    stale["x-amz-date"] = "20200101T000000Z"
    with pytest.raises(RequestError, match="skew|expired"):
        _auth(stale, body, sigv4={"AKIDTEST": "s3cret"})
    with pytest.raises(RequestError) as unsigned:
        _auth({}, body, sigv4={"AKIDTEST": "s3cret"})
    assert unsigned.value.status == 401


def _fetcher(**kw) -> UrlFetcher:
    return UrlFetcher(
        **{"allow_hosts": [], "allow_private": False, "max_bytes": 1000, "timeout_s": 2.0, **kw}
    )


@pytest.mark.parametrize(
    "url,needle",
    [
        ("file:///etc/passwd", "scheme"),
        ("ftp://example.com/a.jpg", "scheme"),
        ("http://127.0.0.1/a.jpg", "loopback"),
        ("http://localhost/a.jpg", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://10.1.2.3/a.jpg", "private"),
        ("http://[::ffff:127.0.0.1]/a.jpg", "loopback"),
        ("http://0x7f000001/a.jpg", "loopback"),
        ("http://user:pw@example.com/a.jpg", "credentials"),
    ],
)
def test_url_guard_refuses_before_connecting(url, needle):
    with pytest.raises(RequestError, match=needle) as info:
        _fetcher()(url)
    assert info.value.status == 400


def test_url_allow_list():
    with pytest.raises(RequestError, match="allow-list"):
        _fetcher(allow_hosts=["images.example.com"])("http://other.example.com/a.jpg")
    assert _fetcher(allow_hosts=["*.example.com"])._host_allowed("cdn.example.com")


@pytest.fixture
def local_http():
    """A loopback HTTP server: /img (200 image), /big (too large), redirects: /hop (relative, to /img),
    /loop (to itself), /by-name (to the same server by the name localhost)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            port = self.server.server_address[1]
            location = {
                "/hop": "/img",
                "/loop": "/loop",
                "/by-name": f"http://localhost:{port}/img",
                "/nowhere": "",
            }.get(self.path)
            if location is not None:
                self.send_response(302)
                if location:
                    self.send_header("Location", location)
                self.end_headers()
                return
            body = b"\xff\xd8\xff" + b"0" * (5000 if self.path == "/big" else 100)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_when_private_allowed_with_limits(local_http):
    fetch = _fetcher(allow_private=True)
    assert fetch(f"{local_http}/img").startswith(b"\xff\xd8\xff")
    with pytest.raises(RequestError, match="larger than 1000"):
        fetch(f"{local_http}/big")
    assert fetch(f"{local_http}/hop").startswith(b"\xff\xd8\xff")  # a redirect is followed
    with pytest.raises(RequestError, match="more than 5 times"):
        fetch(f"{local_http}/loop")
    with pytest.raises(RequestError, match="without a Location"):
        fetch(f"{local_http}/nowhere")
    # every hop is vetted again: the allow-list lets 127.0.0.1 in, not the redirect's localhost
    with pytest.raises(RequestError, match="'localhost' is not in the allow-list"):
        _fetcher(allow_private=True, allow_hosts=["127.0.0.1"])(f"{local_http}/by-name")
    with pytest.raises(RequestError, match="loopback"):
        _fetcher()(f"{local_http}/img")


def test_a_redirect_to_a_private_address_is_refused(monkeypatch):
    """A public image URL that redirects to the cloud metadata address (the classic SSRF hop)."""
    fetch = _fetcher()
    real_resolve = fetch.resolve
    monkeypatch.setattr(
        fetch, "resolve", lambda host, port: "203.0.113.5" if host == "cdn.test" else real_resolve(host, port)
    )
    calls = []

    def answer(httpx, target, host_header, extensions, deadline):
        calls.append(target)
        return "http://169.254.169.254/latest/meta-data/"  # the public host's 302

    monkeypatch.setattr(fetch, "_download", answer)
    with pytest.raises(RequestError, match="link-local"):
        fetch("http://cdn.test/cat.jpg")
    assert calls == ["http://203.0.113.5:80/cat.jpg"]  # the metadata address was never connected to
    with pytest.raises(RequestError, match="from https"):
        fetch("https://cdn.test/cat.jpg")  # https -> http downgrade
