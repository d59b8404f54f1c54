"""Who may call (API keys, boto3 SigV4 signatures) and which image URLs the server may fetch (SSRF guard)."""

from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import logging
import re
import socket
import time
from typing import Any
from urllib.parse import urljoin, urlsplit

from vizsla.serving.errors import RequestError

log = logging.getLogger("vizsla.serving")

MAX_REDIRECTS = 5  # redirects followed per image URL, each hop vetted again

_SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)"
)
IMAGE_CONTENT_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")


# ---------------------------------------------------------------- auth


def check_auth(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes | None,
    *,
    api_keys: list[str],
    sigv4: dict[str, str],
    max_skew_s: float,
    aws: bool = False,
) -> None:
    """Raise 401 (no credentials) or 403 (wrong ones); HEADERS lower-cased. Either auth method suffices.

    With BODY None (the body has not been read yet) everything but a SigV4 signature is checked, so a
    client without valid credentials is refused before it can upload; `signs_body` says whether the check
    must be repeated with the body."""
    authorization = headers.get("authorization", "")
    if sigv4 and authorization.startswith("AWS4-HMAC-SHA256"):
        verify_sigv4(method, url, headers, body, sigv4, max_skew_s)
        return
    key = headers.get("x-api-key") or (
        authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
    )
    if api_keys and key:
        if any(hmac.compare_digest(key.encode(), known.encode()) for known in api_keys):
            return
        raise RequestError(403, "invalid API key", aws_code="UnrecognizedClientException")
    if authorization.startswith("AWS4-HMAC-SHA256"):
        raise RequestError(
            403,
            "SigV4 signatures are not accepted by this server; send an API key",
            aws_code="UnrecognizedClientException",
        )
    wanted = " or ".join(
        w
        for w, on in (
            ("an API key (X-Api-Key or Authorization: Bearer)", api_keys),
            ("a SigV4 signature", sigv4),
        )
        if on
    )
    raise RequestError(
        401,
        f"authentication required: send {wanted}",
        aws_code="MissingAuthenticationTokenException",
        headers={"WWW-Authenticate": 'Bearer realm="vizsla"'} if api_keys and not aws else None,
    )


def signs_body(headers: dict[str, str], sigv4: dict[str, str]) -> bool:
    """True when the request is authenticated by a SigV4 signature, which covers the body."""
    return bool(sigv4) and headers.get("authorization", "").startswith("AWS4-HMAC-SHA256")


def verify_sigv4(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes | None,
    secrets: dict[str, str],
    max_skew_s: float,
) -> None:
    """Recompute a boto3 SigV4 signature with botocore's own signer over the signed headers and the body;
    with BODY None only the credential, the date and the signed header names are checked."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    match = _SIGV4.match(headers.get("authorization", ""))
    if not match:
        raise RequestError(
            403, "malformed SigV4 Authorization header", aws_code="IncompleteSignatureException"
        )
    credential, signed_headers, signature = match.groups()
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise RequestError(403, "malformed SigV4 credential scope", aws_code="IncompleteSignatureException")
    access_key, date, region, service, _ = parts
    secret = secrets.get(access_key)
    if secret is None:
        raise RequestError(
            403, "the access key id is not known to this server", aws_code="UnrecognizedClientException"
        )
    amz_date = headers.get("x-amz-date", "")
    try:
        when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise RequestError(
            403, "missing or malformed X-Amz-Date", aws_code="IncompleteSignatureException"
        ) from None
    skew = abs((dt.datetime.now(dt.UTC) - when).total_seconds())
    if skew > max_skew_s or not amz_date.startswith(date):
        raise RequestError(
            403, "signature expired or clock skew too large", aws_code="InvalidSignatureException"
        )
    names = signed_headers.split(";")
    if "host" not in names:
        raise RequestError(403, "the Host header must be signed", aws_code="IncompleteSignatureException")
    if body is None:
        return
    request = AWSRequest(
        method=method, url=url, data=body, headers={name: headers.get(name, "") for name in names}
    )
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, secret), service, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, signature):
        raise RequestError(
            403,
            "the request signature does not match (check the secret key and the region)",
            aws_code="InvalidSignatureException",
        )


# ---------------------------------------------------------------- URL fetching


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Refused even with --url-allow-private: the cloud instance-metadata services (credentials live there).
METADATA_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "169.254.0.0/16",  # IPv4 link-local: AWS/GCP/Azure 169.254.169.254, ECS 169.254.170.2
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS IMDS over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "192.0.0.192/32",  # Oracle Cloud metadata
    )
)
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215, local use: its prefix length is unknown
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d
# RFC 6052 section 2.2: where the IPv4 octets sit for each NAT64 prefix length (octet 8 is skipped)
_RFC6052_OCTETS = {
    32: (4, 5, 6, 7),
    40: (5, 6, 7, 9),
    48: (6, 7, 9, 10),
    56: (7, 9, 10, 11),
    64: (9, 10, 11, 12),
}


def _nat64_ipv4(ip: ipaddress.IPv6Address, prefix_len: int) -> ipaddress.IPv4Address:
    packed = ip.packed
    if prefix_len == 96:
        return ipaddress.IPv4Address(packed[12:])
    return ipaddress.IPv4Address(bytes(packed[i] for i in _RFC6052_OCTETS[prefix_len]))


def embedded_ipv4(ip: IPAddress) -> list[tuple[str, ipaddress.IPv4Address, bool]]:
    """The IPv4 addresses an IPv6 address carries: (form, IPv4, whether the IPv4 alone decides where a
    connection goes). IPv4-mapped, 6to4 and well-known NAT64 lead to their IPv4 address; IPv4-compatible,
    Teredo (server and client: the client is the bitwise NOT of the last 32 bits), local-use NAT64 (every
    RFC 6052 position, the prefix length being the operator's choice) and ISATAP are checked as well."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found: list[tuple[str, ipaddress.IPv4Address, bool]] = []
    if ip.ipv4_mapped is not None:
        found.append(("IPv4-mapped", ip.ipv4_mapped, True))
    elif ip in _IPV4_COMPATIBLE and int(ip) > 1:
        found.append(("IPv4-compatible", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), False))
    if ip.sixtofour is not None:
        found.append(("6to4", ip.sixtofour, True))
    if ip.teredo is not None:
        server, client = ip.teredo
        found += [("Teredo (server)", server, False), ("Teredo (client)", client, False)]
    if ip in _NAT64_WELL_KNOWN:
        found.append(("NAT64", _nat64_ipv4(ip, 96), True))
    elif ip in _NAT64_LOCAL:
        found += [("local-use NAT64", _nat64_ipv4(ip, n), False) for n in (48, 56, 64, 96)]
    if (int(ip) >> 32) & 0xFDFFFFFF == 0x00005EFE:  # ISATAP interface id ...:0[02]00:5efe:a.b.c.d
        found.append(("ISATAP", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), False))
    return found


def _flag(ip: IPAddress) -> str | None:
    """Why IP is not a public address (loopback, private, link-local, ...), or None."""
    if ip in _NAT64_LOCAL:
        return "private (local-use NAT64)"
    for flag in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{flag}"):
            return flag.replace("_", "-")
    if not ip.is_global:
        return "not globally reachable"
    return None


def refused_address(address: str, *, allow_private: bool = False) -> str | None:
    """Why ADDRESS may not be fetched ("link-local address 169.254.169.254 (in the 6to4 address ...)"), or
    None. IPv6 transition forms are judged by the IPv4 addresses inside them; the cloud metadata ranges
    are refused even when ALLOW_PRIVATE lets private and loopback addresses through."""
    ip = ipaddress.ip_address(address.split("%")[0])
    inner = embedded_ipv4(ip)
    candidates: list[tuple[IPAddress, str]] = [
        (v4, f" (in the {form} address {ip})") for form, v4, _ in inner
    ]
    if not any(decides for _, _, decides in inner):  # the IPv6 address itself is where a connection goes
        candidates.insert(0, (ip, ""))
    for candidate, where in candidates:
        if any(candidate in net for net in METADATA_NETWORKS if net.version == candidate.version):
            kind = "link-local (cloud metadata range)" if candidate.is_link_local else "cloud metadata"
            return f"{kind} address {candidate}{where}"
    if allow_private:
        return None
    for candidate, where in candidates:
        why = _flag(candidate)
        if why:
            return f"{why} address {candidate}{where}"
    return None


_USERINFO = re.compile(r"(?<=//)[^/@\s]*@")
_SECRET_PARAM = re.compile(
    r"(?i)([?&][^=&#\s]*(?:sig|token|key|secret|pass|credential|auth)[^=&#\s]*=)[^&#\s'\"]*"
)


def redact_url(text: str) -> str:
    """TEXT (a URL or a message holding URLs) with credentials and signature/token query values hidden."""
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub("***@", text))


class UrlFetcher:
    """Fetch an image by http(s) URL: host allow-list, pinned vetted IPs on every hop, size/time caps."""

    def __init__(
        self, *, allow_hosts: list[str], allow_private: bool, max_bytes: int, timeout_s: float
    ) -> None:
        self.allow_hosts = [h.lower() for h in allow_hosts]
        self.allow_private = allow_private
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    def _host_allowed(self, host: str) -> bool:
        if not self.allow_hosts:
            return True
        return any(host.endswith(h[1:]) if h.startswith("*.") else host == h for h in self.allow_hosts)

    def resolve(self, host: str, port: int) -> str:
        """One vetted address for HOST; every resolved address must pass (DNS answers can rotate)."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise RequestError(
                400, f"cannot resolve image URL host {host!r}: {exc}", reason="url_refused"
            ) from None
        addresses = sorted({str(info[4][0]) for info in infos})
        if not addresses:
            raise RequestError(400, f"image URL host {host!r} has no address", reason="url_refused")
        for address in addresses:
            why = refused_address(address, allow_private=self.allow_private)
            if why:
                raise RequestError(400, f"image URL refused: {host} resolves to {why}", reason="url_refused")
        return addresses[0]

    def __call__(self, url: str) -> bytes:
        """The image's bytes; redirects are followed (at most MAX_REDIRECTS, never https -> http), every
        hop vetted like the first, all within one timeout. Each refusal is logged (one WARNING line)."""
        try:
            return self._fetch(url)
        except RequestError as exc:
            if exc.reason == "url_refused":
                log.warning("refused image URL %s: %s", redact_url(url), redact_url(exc.message))
            raise

    def _fetch(self, url: str) -> bytes:
        import httpx

        deadline = time.monotonic() + self.timeout_s
        for _ in range(MAX_REDIRECTS + 1):
            target, host_header, extensions = self._vetted(url)
            outcome = self._download(httpx, target, host_header, extensions, deadline)
            if isinstance(outcome, bytes):
                return outcome
            following = urljoin(url, outcome)
            if urlsplit(url).scheme == "https" and urlsplit(following).scheme != "https":
                raise RequestError(
                    400, f"image URL redirected from https to {following!r}: refused", reason="url_refused"
                )
            url = following
        raise RequestError(400, f"image URL redirected more than {MAX_REDIRECTS} times", reason="url_refused")

    def _vetted(self, url: str) -> tuple[str, str, dict[str, Any]]:
        """(URL with the host pinned to one vetted address, Host header, TLS extensions), or a refusal."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise RequestError(
                400,
                f"image URL scheme {parts.scheme or '(none)'!r} refused: http or https only",
                reason="url_refused",
            )
        host = (parts.hostname or "").lower()
        if not host:
            raise RequestError(400, "image URL has no host", reason="url_refused")
        if parts.username or parts.password:
            raise RequestError(400, "image URL must not carry credentials", reason="url_refused")
        if not self._host_allowed(host):
            raise RequestError(400, f"image URL host {host!r} is not in the allow-list", reason="url_refused")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise RequestError(400, "image URL has an invalid port", reason="url_refused") from None
        address = self.resolve(host, port)
        pinned = f"[{address}]" if ":" in address else address
        target = f"{parts.scheme}://{pinned}:{port}{parts.path or '/'}" + (
            f"?{parts.query}" if parts.query else ""
        )
        netloc_host = parts.netloc.rsplit("@", 1)[-1]
        extensions: dict[str, Any] = {"sni_hostname": host} if parts.scheme == "https" else {}
        return target, netloc_host, extensions

    def _download(
        self, httpx: Any, target: str, host_header: str, extensions: dict[str, Any], deadline: float
    ) -> bytes | str:
        """The body of a 200 image answer, or the Location of a redirect."""
        timeout = httpx.Timeout(max(0.001, deadline - time.monotonic()))
        try:
            with (
                httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
                client.stream(
                    "GET", target, headers={"Host": host_header, "Accept": "image/*"}, extensions=extensions
                ) as response,
            ):
                if response.is_redirect:
                    location = response.headers.get("location", "").strip()
                    if not location:
                        raise RequestError(
                            400, "image URL answered a redirect without a Location", reason="url_failed"
                        )
                    return location
                if response.status_code != 200:
                    raise RequestError(
                        400, f"image URL answered HTTP {response.status_code}", reason="url_failed"
                    )
                kind = response.headers.get("content-type", "").lower()
                if kind and not kind.startswith(IMAGE_CONTENT_TYPES):
                    raise RequestError(
                        400, f"image URL content type {kind!r} is not an image", reason="url_failed"
                    )
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("total time limit")
                    if size > self.max_bytes:
                        raise RequestError(
                            400, f"image at URL is larger than {self.max_bytes} bytes", reason="url_too_large"
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.TimeoutException:
            raise RequestError(
                400, f"image URL did not answer within {self.timeout_s:g} s", reason="url_failed"
            ) from None
        except httpx.HTTPError as exc:
            raise RequestError(
                400, f"cannot fetch image URL: {type(exc).__name__}: {exc}", reason="url_failed"
            ) from None
