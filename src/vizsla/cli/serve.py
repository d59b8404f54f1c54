"""`vizsla serve`, `vizsla export` and `vizsla predict`: serve a trained model, export it, query a server."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

from vizsla.errors import UserError

LIMITS = "Limits and batching"
SECURITY = "Security"


def serve(
    path: Path = typer.Argument(
        ..., help="Training job folder, model folder, or tuning job folder with --best."
    ),
    port: int = typer.Option(None, "--port", "-p", help="Port (default: $SAGEMAKER_BIND_TO_PORT or 8080)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; 0.0.0.0 to serve other machines."),
    workers: int = typer.Option(1, "--workers", min=1, help="Server processes (each loads the model)."),
    best: bool = typer.Option(False, "--best", help="PATH is a tuning job: serve its best trial's model."),
    name: str = typer.Option(
        "model", "--name", help="Model/endpoint name in /endpoints/NAME and /v2/models/NAME."
    ),
    runtime: str = typer.Option(
        "onnx",
        "--runtime",
        help="onnx (ONNX Runtime, checked against torch), torch, or onnx-int8 (the model `vizsla export "
        "--quantize int8` wrote, with its measured accuracy change).",
    ),
    handler: Path = typer.Option(
        None,
        "--handler",
        "--entry-point",
        help="Python file overriding model_fn/input_fn/predict_fn/output_fn/transform_fn (SageMaker "
        "inference-toolkit names). With a script job's own model files (e.g. model.pth) it must define "
        "model_fn; such a model is served in-process by that Python code (no ONNX export is possible).",
    ),
    source_dir: Path = typer.Option(
        None,
        "--source-dir",
        help="Folder holding the entry point and the modules it imports (SageMaker's source_dir).",
    ),
    max_payload_mb: float = typer.Option(
        6.0, "--max-payload-mb", help="Request body limit (413 above).", rich_help_panel=LIMITS
    ),
    max_batch_size: int = typer.Option(
        16, "--max-batch-size", min=1, help="Images per forward pass.", rich_help_panel=LIMITS
    ),
    max_wait_ms: float = typer.Option(
        2.0, "--max-wait-ms", min=0, help="How long a batch waits to fill.", rich_help_panel=LIMITS
    ),
    timeout_s: float = typer.Option(
        60.0, "--timeout", help="Per-request inference time limit in seconds.", rich_help_panel=LIMITS
    ),
    header_timeout_s: float = typer.Option(
        10.0,
        "--header-timeout",
        help="Seconds a request's headers may take to arrive (408 and closed after).",
        rich_help_panel=LIMITS,
    ),
    body_timeout_s: float = typer.Option(
        30.0,
        "--body-timeout",
        help="Seconds a request body may take, plus its size at --body-min-rate (408 and closed after).",
        rich_help_panel=LIMITS,
    ),
    body_min_rate_kb: float = typer.Option(
        64.0,
        "--body-min-rate",
        help="Slowest upload allowed for a body's size, in KiB/s (adds to --body-timeout).",
        rich_help_panel=LIMITS,
    ),
    body_idle_timeout_s: float = typer.Option(
        10.0,
        "--body-idle-timeout",
        help="Seconds a request body may pause between two pieces (408 and closed after).",
        rich_help_panel=LIMITS,
    ),
    max_connections: int = typer.Option(
        512,
        "--max-connections",
        min=1,
        help="Open connections per server process; requests beyond get 503.",
        rich_help_panel=LIMITS,
    ),
    api_key: list[str] = typer.Option(
        None,
        "--api-key",
        help="Require this key (X-Api-Key or Bearer); repeatable; also $VIZSLA_API_KEYS (comma-separated).",
        rich_help_panel=SECURITY,
    ),
    sigv4: list[str] = typer.Option(
        None,
        "--sigv4",
        help="Accept boto3 SigV4 requests signed with ACCESS_KEY:SECRET; repeatable.",
        rich_help_panel=SECURITY,
    ),
    allow_urls: bool = typer.Option(
        False, "--allow-urls", help='Fetch images from {"url": ...} JSON.', rich_help_panel=SECURITY
    ),
    url_host: list[str] = typer.Option(
        None,
        "--url-host",
        help="Allow-listed URL host (*.example.com works); repeatable.",
        rich_help_panel=SECURITY,
    ),
    url_allow_private: bool = typer.Option(
        False,
        "--url-allow-private",
        help="Let URLs reach private, loopback and link-local addresses.",
        rich_help_panel=SECURITY,
    ),
) -> None:
    """Serve a trained model: SageMaker routes, boto3 invoke_endpoint, KServe v2, metrics.

    A script job's model (whatever its training script saved) is served through the entry point's
    model_fn / input_fn / predict_fn / output_fn, as SageMaker's PyTorch inference toolkit does.
    """
    from vizsla.serving.server import resolve_target, run_server
    from vizsla.serving.settings import MIB, ServeSettings

    target = resolve_target(path, best=best)
    keys = list(api_key or []) + [k for k in os.environ.get("VIZSLA_API_KEYS", "").split(",") if k.strip()]
    credentials = {}
    for item in sigv4 or []:
        access, sep, secret = item.partition(":")
        if not sep or not access or not secret:
            raise UserError(f"--sigv4 wants ACCESS_KEY:SECRET, got {item!r}")
        credentials[access] = secret
    if port is None:
        port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    from pydantic import ValidationError

    try:
        settings = ServeSettings(
            model_path=target,
            model_name=name,
            runtime=runtime,
            handler_path=handler,
            handler_source_dir=source_dir,
            max_payload_bytes=int(max_payload_mb * MIB),
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            request_timeout_s=timeout_s,
            header_timeout_s=header_timeout_s,
            body_timeout_s=body_timeout_s,
            body_min_rate_bytes_s=body_min_rate_kb * 1024,
            body_idle_timeout_s=body_idle_timeout_s,
            max_connections=max_connections,
            api_keys=keys,
            sigv4_credentials=credentials,
            allow_url_fetch=allow_urls,
            url_allow_hosts=list(url_host or []),
            url_allow_private=url_allow_private,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UserError(f"invalid serve option: {problems}") from None
    if runtime == "onnx-int8" and handler is None:  # before any worker starts: a clear error, once
        from vizsla.models.io import resolve_model_dir
        from vizsla.serving.runtime import int8_files

        int8_files(resolve_model_dir(target), target)
    console = Console(stderr=True)
    console.print(
        f"serving {target} as [bold]{name}[/bold]: loading the model (a first start exports it to ONNX "
        "and checks it against torch, then warms it up); the URL follows once the server listens",
        soft_wrap=True,
    )
    run_server(
        settings,
        host=host,
        port=port,
        workers=workers,
        on_listening=lambda url: console.print(f"ready: {name} answers on {url}", soft_wrap=True),
    )


def export(
    path: Path = typer.Argument(..., help="Training job folder or model folder."),
    fmt: str = typer.Option("onnx", "--format", help="Export format: onnx."),
    quantize: str = typer.Option(None, "--quantize", help="int8: quantise and report the accuracy change."),
    output: Path = typer.Option(None, "--output", "-o", help="File to write (default: in the model folder)."),
) -> None:
    """Export a trained model to ONNX (checked against torch), optionally int8 with its accuracy change.

    Only vizsla models export: a script job's own files (model.pth) are loaded by its inference script's
    model_fn, so serve them with `vizsla serve JOB --entry-point inference.py` instead.
    """
    from vizsla.serving.export import export_model

    export_model(path, fmt=fmt, quantize=quantize, output=output, echo=typer.echo)


def predict(
    images: list[Path] = typer.Argument(..., help="Image files to classify."),
    endpoint: str = typer.Option(..., "--endpoint", help="Server URL, e.g. http://127.0.0.1:8080."),
    topk: int = typer.Option(5, "--topk", min=1, help="Classes to print per image."),
    api_key: str = typer.Option(None, "--api-key", envvar="VIZSLA_API_KEY", help="API key for the server."),
) -> None:
    """Send images to a running server and print the top-k classes of each."""
    from vizsla.serving.client import PredictionError, Predictor

    failed = False
    with Predictor(endpoint, api_key=api_key) as client:
        for image in images:
            try:
                result = client.predict(image, topk=topk)
            except PredictionError as exc:
                typer.echo(f"{image}: error: {exc.message}", err=True)
                failed = True
                continue
            ranked = ", ".join(f"{item['label']} {item['probability']:.3f}" for item in result["topk"])
            typer.echo(f"{image}: {ranked}")
    if failed:
        raise typer.Exit(1)
