"""`vizsla serve`, `vizsla export` and `vizsla predict`: serve a trained model, export it, query a server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from vizsla.cli.options import Flag, command, flag, given, in_panel
from vizsla.errors import UserError

LIMITS = "Limits and batching"
SECURITY = "Security"


def _bytes_of_mib(mib: float) -> int:
    from vizsla.serving.settings import MIB

    return int(mib * MIB)


def _bytes_of_kib(kib: float) -> float:
    return kib * 1024


def _credentials(items: list[str]) -> dict[str, str]:
    """--sigv4 ACCESS_KEY:SECRET (repeatable) -> {access key: secret}."""
    credentials = {}
    for item in items:
        access, sep, secret = item.partition(":")
        if not sep or not access or not secret:
            raise UserError(f"--sigv4 wants ACCESS_KEY:SECRET, got {item!r}")
        credentials[access] = secret
    return credentials


def _serve(name: str, decls: str, path: str, kind: Any, default: Any, help: str, **settings: Any) -> Flag:
    """A serve option filling the ServeSettings field PATH ("": the server's own); SETTINGS: min=, convert=.

    ServeSettings' fields carry no descriptions, so the help is written here, once."""
    convert = settings.pop("convert", None)
    return flag(
        name, decls, path, None, kind=kind, default=default, help=help, convert=convert, settings=settings
    )


# fmt: off
SERVE_FLAGS = (  # name, flag, ServeSettings field, type, default, help
    _serve("path", "", "", Path, ...,
           "Training job folder, model folder, tuning job folder with --best, or a registered model "
           "(models:/NAME@ALIAS, models:/NAME/VERSION)."),
    _serve("port", "--port -p", "", int, None, "Port (default: $SAGEMAKER_BIND_TO_PORT or 8080)."),
    _serve("host", "--host", "", str, "127.0.0.1", "Address to bind; 0.0.0.0 to serve other machines."),
    _serve("workers", "--workers", "", int, 1, "Server processes (each loads the model).", min=1),
    _serve("best", "--best", "", bool, False, "PATH is a tuning job: serve its best trial's model."),
    _serve("tracking_uri", "--tracking-uri", "", str, None,
           "MLflow store of a PATH models:/NAME@ALIAS or models:/NAME/VERSION (default "
           "$MLFLOW_TRACKING_URI, else ./runs/mlflow.db)."),
    _serve("name", "--name", "model_name", str, "model",
           "Model/endpoint name in /endpoints/NAME and /v2/models/NAME."),
    _serve(
        "runtime", "--runtime", "runtime", str, "onnx",
        "onnx (ONNX Runtime, checked against torch), torch, onnx-int8 (a head-only job's model on the int8 "
        "backbone its feature extraction ran, else the model `vizsla export --quantize int8` wrote, with "
        "its measured accuracy change), or auto (that int8 backbone when there is one, else onnx).",
    ),
    _serve(
        "handler", "--handler --entry-point", "handler_path", Path, None,
        "Python file overriding model_fn/input_fn/predict_fn/output_fn/transform_fn (SageMaker "
        "inference-toolkit names). With a script job's own model files (e.g. model.pth) it must define "
        "model_fn; such a model is served in-process by that Python code (no ONNX export is possible).",
    ),
    _serve(
        "source_dir", "--source-dir", "handler_source_dir", Path, None,
        "Folder holding the entry point and the modules it imports (SageMaker's source_dir).",
    ),
    *in_panel(
        LIMITS,
        _serve("max_payload_mb", "--max-payload-mb", "max_payload_bytes", float, 6.0,
               "Request body limit (413 above).", convert=_bytes_of_mib),
        _serve("max_batch_size", "--max-batch-size", "max_batch_size", int, 16,
               "Images per forward pass.", min=1),
        _serve("max_wait_ms", "--max-wait-ms", "max_wait_ms", float, 2.0,
               "How long a batch waits to fill.", min=0),
        _serve("timeout_s", "--timeout", "request_timeout_s", float, 60.0,
               "Per-request inference time limit in seconds."),
        _serve("header_timeout_s", "--header-timeout", "header_timeout_s", float, 10.0,
               "Seconds a request's headers may take to arrive (408 and closed after)."),
        _serve("body_timeout_s", "--body-timeout", "body_timeout_s", float, 30.0,
               "Seconds a request body may take, plus its size at --body-min-rate (408 and closed after)."),
        _serve("body_min_rate_kb", "--body-min-rate", "body_min_rate_bytes_s", float, 64.0,
               "Slowest upload allowed for a body's size, in KiB/s (adds to --body-timeout).",
               convert=_bytes_of_kib),
        _serve("body_idle_timeout_s", "--body-idle-timeout", "body_idle_timeout_s", float, 10.0,
               "Seconds a request body may pause between two pieces (408 and closed after)."),
        _serve("max_connections", "--max-connections", "max_connections", int, 512,
               "Open connections per server process; requests beyond get 503.", min=1),
    ),
    *in_panel(
        SECURITY,
        _serve("api_key", "--api-key", "", list[str], None,
               "Require this key (X-Api-Key or Bearer); repeatable; also $VIZSLA_API_KEYS "
               "(comma-separated)."),
        _serve("sigv4", "--sigv4", "sigv4_credentials", list[str], None,
               "Accept boto3 SigV4 requests signed with ACCESS_KEY:SECRET; repeatable.",
               convert=_credentials),
        _serve("allow_urls", "--allow-urls", "allow_url_fetch", bool, False,
               'Fetch images from {"url": ...} JSON.'),
        _serve("url_host", "--url-host", "url_allow_hosts", list[str], None,
               "Allow-listed URL host (*.example.com works); repeatable."),
        _serve("url_allow_private", "--url-allow-private", "url_allow_private", bool, False,
               "Let URLs reach private, loopback and link-local addresses."),
    ),
)
# fmt: on


@command(*SERVE_FLAGS)
def serve(**options: Any) -> None:
    """Serve a trained model: SageMaker routes, boto3 invoke_endpoint, KServe v2, metrics.

    A script job's model (whatever its training script saved) is served through the entry point's
    model_fn / input_fn / predict_fn / output_fn, as SageMaker's PyTorch inference toolkit does.
    """
    from pydantic import ValidationError

    from vizsla.base_spec import format_validation_error
    from vizsla.serving.server import resolve_target, run_server
    from vizsla.serving.settings import ServeSettings

    target = resolve_target(options["path"], best=options["best"], tracking_uri=options["tracking_uri"])
    fields = given(SERVE_FLAGS, options)
    env_keys = [k for k in os.environ.get("VIZSLA_API_KEYS", "").split(",") if k.strip()]
    fields["api_keys"] = list(options["api_key"] or []) + env_keys
    port = options["port"]
    if port is None:
        port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    try:
        settings = ServeSettings(model_path=target, **fields)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, "invalid serve option", one_line=True)) from None
    runtime, handler, name = options["runtime"], options["handler"], options["name"]
    if runtime == "onnx-int8" and handler is None:  # before any worker starts: a clear error, once
        from vizsla.models.io import resolve_model_dir
        from vizsla.serving.runtime import has_feature_int8, int8_files

        if not has_feature_int8(target):
            int8_files(resolve_model_dir(target), target)
    console = Console(stderr=True)
    console.print(
        f"serving {target} as [bold]{name}[/bold]: loading the model (a first start exports it to ONNX "
        "and checks it against torch, then warms it up); the URL follows once the server listens",
        soft_wrap=True,
    )
    run_server(
        settings,
        host=options["host"],
        port=port,
        workers=options["workers"],
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
