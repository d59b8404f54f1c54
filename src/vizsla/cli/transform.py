"""`vizsla transform`: classify every image of a folder, bucket prefix or manifest offline (batch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from vizsla.cli.options import command, flag, given, in_panel, nest
from vizsla.errors import UserError
from vizsla.transform.spec import TransformSpec

SCRIPT = "Script mode (inference.py)"
SPEED = "Speed and scale"


def _json_mapping(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--storage-options must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise UserError(f"--storage-options must be a JSON object, got {text!r}")
    return value


def _flag(name: str, decls: str, kind: Any = str, default: Any = None, **kw: Any) -> Any:
    """A transform flag filling the TransformSpec field of the same name (its help is the description)."""
    return flag(name, decls, name, TransformSpec, kind=kind, default=default, **kw)


# fmt: off
TRANSFORM_FLAGS = (
    _flag("model", "", str, ...),
    _flag("data", "--data -d", str, ...),
    _flag("output", "--output -o", str, ...),
    _flag("best", "--best", bool, False),
    _flag("tracking_uri", "--tracking-uri"),
    _flag("runtime", "--runtime"),
    _flag("format", "--format"),
    _flag("top_k", "--top-k", int),
    _flag("all_scores", "--all-scores", bool, False),
    _flag("data_type", "--data-type"),
    _flag("storage_options", "--storage-options", convert=_json_mapping),
    _flag("name", "--name"),
    *in_panel(
        SPEED,
        _flag("shard", "--shard"),
        _flag("batch_size", "--batch-size", int),
        _flag("decode_workers", "--decode-workers", int),
        _flag("engine", "--engine"),
    ),
    *in_panel(
        SCRIPT,
        _flag("entry_point", "--entry-point --handler", Path, convert=str),
        _flag("source_dir", "--source-dir", Path, convert=str),
        _flag("content_type", "--content-type"),
        _flag("accept", "--accept"),
    ),
    flag("quiet", "--quiet -q", kind=bool, default=False, help="No progress bar."),
)
# fmt: on


@command(*TRANSFORM_FLAGS)
def transform(**options: Any) -> None:
    """Batch transform: every image of a folder, s3:// prefix, manifest or CSV through a model, offline.

    Writes SageMaker's layout (OUTPUT/<input name>.out: the endpoint's JSON answer), one predictions.jsonl
    or .csv, summary.json and rejected.csv (bad files with their reasons; they never stop the run). Run
    the same command again after an interruption: it continues where it stopped. A script job's model goes
    through its inference.py (model_fn / input_fn / predict_fn / output_fn), as SageMaker does.
    """
    from pydantic import ValidationError

    from vizsla.base_spec import format_validation_error
    from vizsla.transform.runner import run_transform

    try:
        spec = TransformSpec.model_validate(nest(given(TRANSFORM_FLAGS, options)))
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, "invalid transform option", one_line=True)) from None
    summary = run_transform(spec, progress=not options["quiet"])
    output = Path(spec.output)
    console = Console(stderr=True, highlight=False)
    console.print(
        f"transformed {summary['inputs']} files: {summary['predicted']} predicted, {summary['rejected']} "
        f"rejected ({output / summary['rejected_list']}); {summary['images_per_s']} images/s "
        f"({summary['runtime']}, batch {summary['batch_size']}); predictions in "
        f"{output / summary['predictions']}",
        soft_wrap=True,
    )
