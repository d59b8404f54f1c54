"""`vizsla.Predictor`: a small client for a running `vizsla serve` (or any server with the same routes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vizsla.errors import UserError


class PredictionError(UserError):
    """The server refused or failed a request; `status` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"server answered {status}: {message}")


class Predictor:
    """POST images to URL's /invocations and get the top-k classes back, like SageMaker's Predictor."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout_s: float = 70.0) -> None:
        import httpx

        self.url = url.rstrip("/")
        headers = {"X-Api-Key": api_key} if api_key else {}
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s, trust_env=False)

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def predict(self, image: bytes | str | Path, topk: int = 5, *, full: bool = False) -> dict[str, Any]:
        """One image (bytes or a path) -> {"label", "probability", "topk": [...]} (+ "scores" when full)."""
        import httpx

        data = image if isinstance(image, bytes | bytearray) else _read(Path(image))
        params: dict[str, Any] = {"topk": topk}
        if full:
            params["verbose"] = "full"
        try:
            response = self._client.post(
                "/invocations",
                content=bytes(data),
                params=params,
                headers={"Content-Type": "application/x-image", "Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise UserError(f"cannot reach {self.url}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise PredictionError(response.status_code, _error_text(response))
        return response.json()["predictions"][0]

    def health(self) -> bool:
        """True when the server answers /ping with 200."""
        import httpx

        try:
            return self._client.get("/ping").status_code == 200
        except httpx.HTTPError:
            return False


def _read(path: Path) -> bytes:
    try:
        return path.expanduser().read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read image {path}: {exc.strerror or exc}") from None


def _error_text(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    return str(body.get("error") or body.get("message") or body) if isinstance(body, dict) else str(body)
