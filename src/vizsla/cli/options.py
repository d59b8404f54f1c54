"""Command-line options built from the specs: each flag declared once, its help its spec field's description.

A `Flag` names an option (`--lr`), the spec field it fills (`train.lr` of JobSpec) and how a typed value
becomes the field's value. `command(...)` turns a command's flags into the signature Typer reads, and
`given(...)` puts the values a user gave onto their fields, so YAML and flags fill one spec: a flag given
overrides the YAML, a flag not given (None) leaves the YAML value or the default.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from vizsla.errors import UserError
from vizsla.scriptmode.spec import ScriptJobSpec
from vizsla.spec import JobSpec

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, eq=False)
class Flag:
    """One option of a command: its names, the spec field it fills and how a given value becomes that field's.

    HELP is only for flags that fill no field (--config, --quiet) or set one to a fixed value (--no-tracking):
    every other flag's help is its field's description, so it is written once, in the spec."""

    name: str  # the command function's parameter
    decls: tuple[str, ...]  # "--batch-size", "-b"; "--augment/--no-augment" for an on/off pair
    path: str = ""  # dotted field path in SPEC, e.g. "train.lr"; "" for a flag that steers the command only
    spec: type[BaseModel] | None = JobSpec
    help: str = ""
    kind: Any = str  # the value type Typer parses: str, int, float, bool, Path, list[str]
    default: Any = None
    convert: Callable[[Any], Any] | None = None  # given value -> field value; None back means "not given"
    panel: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)  # more Typer settings: hidden, min, ...

    @property
    def help_text(self) -> str:
        """The help Typer shows: the field's description, unless the flag says what it does itself."""
        if self.help or not self.path or self.spec is None:
            return self.help
        description = field_info(self.spec, self.path).description
        if not description:
            raise ValueError(
                f"{self.spec.__name__}.{self.path} has no description for {self.decls[0]}'s help"
            )
        return description

    def parameter(self) -> inspect.Parameter:
        """The keyword parameter Typer turns into this option (or a positional argument: no decls)."""
        if self.decls:
            info = typer.Option(
                self.default, *self.decls, help=self.help_text, rich_help_panel=self.panel, **self.settings
            )
        else:
            info = typer.Argument(self.default, help=self.help_text, **self.settings)
        return inspect.Parameter(
            self.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=self.kind
        )


def flag(name: str, decls: str, path: str = "", spec: type[BaseModel] | None = JobSpec, **kw: Any) -> Flag:
    """A Flag whose names are one string: flag("batch_size", "--batch-size -b", "train.batch_size")."""
    return Flag(name, tuple(decls.split()), path, spec, **kw)


def field_info(model: type[BaseModel], path: str) -> FieldInfo:
    """The pydantic field at the dotted PATH of MODEL, through nested specs (optional ones too)."""
    *parents, leaf = path.split(".")
    for part in parents:
        annotation = model.model_fields[part].annotation
        model = next(
            c
            for c in (annotation, *typing.get_args(annotation))
            if isinstance(c, type) and issubclass(c, BaseModel)
        )
    return model.model_fields[leaf]


def in_panel(panel: str, *flags: Flag) -> tuple[Flag, ...]:
    """FLAGS shown under PANEL in this command's help (a shared flag sits in each command's own panel)."""
    return tuple(replace(f, panel=panel) for f in flags)


def command(*flags: Flag, context: bool = False) -> Callable[[F], F]:
    """Give a `def cmd(**options)` the signature Typer reads: one keyword parameter per flag (ctx first)."""
    parameters = [f.parameter() for f in flags]
    if context:
        ctx = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
        parameters.insert(0, ctx)

    def attach(func: F) -> F:
        func.__signature__ = inspect.Signature(parameters, return_annotation=None)  # type: ignore[attr-defined]
        return func

    return attach


def given(flags: Iterable[Flag], values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The fields the user's flags set, {PREFIX + dotted path: value}; a flag not given sets nothing."""
    fields: dict[str, Any] = {}
    for item in flags:
        value = values.get(item.name)
        if not item.path or value is None:
            continue
        if item.convert is not None:
            value = item.convert(value)
        if value is not None:
            fields[prefix + item.path] = value
    return fields


def nest(fields: Mapping[str, Any]) -> dict[str, Any]:
    """{'train.lr': 0.1} -> {'train': {'lr': 0.1}}: the overrides a spec is built from (None: not given)."""
    nested: dict[str, Any] = {}
    for dotted, value in fields.items():
        if value is None:
            continue
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def sets(value: Any) -> Callable[[bool], Any]:
    """The converter of an on-only switch: when on, it sets its field to VALUE (--no-tracking: False)."""
    return lambda on: value if on else None


def _channels(items: list[str]) -> dict[str, str] | None:
    from vizsla.cli.script_train import parse_channels

    return parse_channels(items) or None


def _hyperparameters(items: list[str]) -> dict[str, Any] | None:
    from vizsla.scriptmode.spec import parse_hyperparameters

    return parse_hyperparameters(items) or None


def _metric_definitions(items: list[str]) -> list[dict[str, Any]] | None:
    from vizsla.scriptmode.spec import parse_metric_definition

    return [parse_metric_definition(text).model_dump() for text in items] or None


def rules_section(text: str) -> dict[str, Any]:
    """--rules A,B: the debugger on, running exactly rules A and B (not the default set)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise UserError("--rules needs rule names, e.g. --rules VanishingGradient,Overfit")
    return {"enabled": True, "default_rules": False, "rules": [{"name": n} for n in names]}


# --- flags `vizsla train` and `vizsla tune` share -----------------------------------------------------------
# fmt: off

DATA = flag("data", "--data", "data.root")
MODEL = flag("model", "--model -m", "model.name")
EPOCHS = flag("epochs", "--epochs", "train.epochs", kind=int)
FINETUNE = flag("finetune", "--finetune", "train.finetune")
NO_TRACKING = flag(
    "no_tracking", "--no-tracking", "tracking.enabled", kind=bool, default=False, convert=sets(False),
    help="Do not record the job in MLflow.",
)
QUIET = flag("quiet", "--quiet -q", kind=bool, default=False, help="No progress bars.")
REGISTER = flag("register", "--register", "tracking.registered_model_name")
NO_LOG_MODEL = flag(
    "no_log_model", "--no-log-model", "tracking.log_model", kind=bool, default=False, convert=sets(False),
    help="Log no MLflow model (the run keeps its metrics and files; saves the model's copy in the store).",
)
TENSORBOARD = flag("tensorboard", "--tensorboard", "tracking.tensorboard", kind=bool, default=False,
                   convert=sets(True))

# a user's own training script (script mode): fields of ScriptJobSpec
ENTRY_POINT = flag("entry_point", "--entry-point", "entry_point", ScriptJobSpec)
SOURCE_DIR = flag("source_dir", "--source-dir", "source_dir", ScriptJobSpec, kind=Path, convert=str)
CHANNELS = flag("channels", "--channel", "channels", ScriptJobSpec, kind=list[str], convert=_channels)
HYPERPARAMETERS = flag(
    "hyperparameters", "--hyperparameters --hyperparameter -H", "hyperparameters", ScriptJobSpec,
    kind=list[str], convert=_hyperparameters,
)
METRIC_DEFINITIONS = flag(
    "metric_definitions", "--metric-definition", "metric_definitions", ScriptJobSpec, kind=list[str],
    convert=_metric_definitions,
)
PYTHON = flag("python", "--python", "python", ScriptJobSpec)
INFERENCE_ENTRY_POINT = flag(
    "inference_entry_point", "--inference-entry-point", "inference_entry_point", ScriptJobSpec
)

# --- flags of a training job, run by Vizsla's trainer or as a script ----------------------------------------

NAME = flag("name", "--name", "name")
OUTPUT = flag("output", "--output -o", "output", kind=Path, convert=str)
TRACKING_URI = flag("tracking_uri", "--tracking-uri", "tracking.uri")
EXPERIMENT = flag("experiment", "--experiment", "tracking.experiment")
DEBUG = flag("debug", "--debug", "debug.enabled", kind=bool, default=False, convert=sets(True))
PROFILE = flag(  # ProfileSpec (vizsla.profiler) describes `enabled` too briefly for a help text
    "profile", "--profile", "profile.enabled", kind=bool, default=False, convert=sets(True),
    help="Profile the job: system metrics, step phases, rules with recommendations, "
    "DIR/reports/profiler-report.html (`vizsla profile DIR` rebuilds it).",
)
RULES = flag(
    "rules", "--rules", "debug", convert=rules_section,
    help="Debugger rules to run instead of the defaults, e.g. VanishingGradient,Overfit "
    "(implies --debug; tune them in the YAML debug: section).",
)
INSTALL_REQUIREMENTS = flag(
    "install_requirements", "--install-requirements", "install_requirements", ScriptJobSpec, kind=bool,
    default=False, convert=sets(True),
)
MAX_RUN = flag("max_run", "--max-run", "max_run_s", ScriptJobSpec, kind=float)
NO_DEBUG_HOOK = flag(
    "no_debug_hook", "--no-debug-hook", "debug_hook", ScriptJobSpec, kind=bool, default=False,
    convert=sets(False),
    help="No default smdebug hook config (SageMaker's debugger_hook_config=False); without --debug a "
    "script's Hook.create_from_json_file() otherwise gets SageMaker's default (losses).",
)
# fmt: on
