"""Image URL fetching: IPv6 transition forms are unwrapped, the cloud metadata ranges stay refused with
--url-allow-private, and every refusal is logged once with the URL's credentials hidden."""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from vizsla.serving.errors import RequestError
from vizsla.serving.security import UrlFetcher, refused_address
from vizsla.serving.settings import ServeSettings
from vizsla.serving.testing import running_server
from vizsla.testing.cli import RecordingHandler

METADATA_FORMS = [
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
    ("http://169.254.170.2/v2/credentials", "169.254.170.2"),  # ECS task credentials
    ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254"),
    ("http://[2002:a9fe:a9fe::]/", "6to4"),
    ("http://[64:ff9b::a9fe:a9fe]/", "NAT64"),
    ("http://[64:ff9b::169.254.169.254]/", "NAT64"),
    ("http://[64:ff9b:1:a9fe:a9:fe00::]/", "local-use NAT64"),  # RFC 6052 /48 layout
    ("http://[2001:0:4136:e378:8000:63bf:5601:5601]/", "Teredo (client)"),  # client = NOT 0x5601_5601
    ("http://[::ffff:169.254.169.254]/", "IPv4-mapped"),
    ("http://[::169.254.169.254]/", "IPv4-compatible"),
    ("http://[fe80::1]/", "fe80::1"),
]


def _fetcher(allow_private: bool) -> UrlFetcher:
    return UrlFetcher(allow_hosts=[], allow_private=allow_private, max_bytes=10_000, timeout_s=0.5)


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize("url,named", METADATA_FORMS)
def test_metadata_addresses_are_refused_in_every_form(url, named, allow_private):
    with pytest.raises(RequestError) as info:
        _fetcher(allow_private)(url)
    assert info.value.reason == "url_refused", info.value.message
    assert "metadata" in info.value.message and named in info.value.message, info.value.message


@pytest.mark.parametrize(
    "address,why",
    [
        ("2002:7f00:1::", "loopback address 127.0.0.1 (in the 6to4 address"),
        ("64:ff9b::a00:1", "private address 10.0.0.1 (in the NAT64 address"),
        ("::ffff:192.168.1.1", "private address 192.168.1.1"),
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),  # Teredo around 10.0.0.1
        ("64:ff9b:1::808:808", "local-use NAT64"),
    ],
)
def test_transition_forms_are_judged_by_the_ipv4_inside(address, why):
    reason = refused_address(address)
    assert reason is not None and why in reason, reason
    assert refused_address(address, allow_private=True) is None  # private, not metadata: allowed on request


def test_public_addresses_behind_transition_forms_stay_allowed():
    for address in ("8.8.8.8", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::", "::ffff:8.8.8.8"):
        assert refused_address(address) is None, address


_Records = RecordingHandler


@pytest.fixture
def refusals() -> Iterator[_Records]:
    handler = _Records()
    logger = logging.getLogger("vizsla.serving")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def image_host(jpeg: bytes) -> Iterator[str]:
    """A loopback HTTP server that answers every GET with the JPEG (a private host)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(jpeg)))
            self.end_headers()
            self.wfile.write(jpeg)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.slow
@pytest.mark.integration
def test_allow_private_server_fetches_private_hosts_but_never_metadata(
    serving_job: Path, image_host: str, refusals: _Records
):
    settings = ServeSettings(
        model_path=serving_job, allow_url_fetch=True, url_allow_private=True, url_timeout_s=1.0
    )
    with running_server(settings) as (url, _), httpx.Client(base_url=url, timeout=10) as client:
        assert client.post("/invocations", json={"url": f"{image_host}/cat.jpg"}).status_code == 200
        for target in ("http://169.254.169.254/latest/meta-data/", "http://[2002:a9fe:a9fe::]/"):
            refused = client.post("/invocations", json={"url": target})
            assert refused.status_code == 400
            assert "cloud metadata" in refused.json()["error"], refused.text
        secret = client.post(
            "/invocations", json={"url": "http://admin:hunter2@[64:ff9b::a9fe:a9fe]/?token=abc&x=1"}
        )
        assert secret.status_code == 400
    records = [r for r in refusals.records if r.getMessage().startswith("refused image URL")]
    lines = [r.getMessage() for r in records]
    assert len(lines) == 3 and all(r.levelno == logging.WARNING for r in records), lines
    assert "metadata" in lines[0] and "6to4" in lines[1]
    assert "hunter2" not in lines[2] and "***@" in lines[2] and "token=***" in lines[2], lines[2]
