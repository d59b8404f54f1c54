"""The base of every pydantic spec: strict keys, YAML in and out, one way to build one and report its errors.

JobSpec, ScriptJobSpec and TuneSpec (and their sections) derive from `BaseSpec`; the specs of a job that
writes a directory from `BaseJobSpec`. It lives apart from vizsla.spec so that any spec module, including
those vizsla.spec itself imports, can derive from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from vizsla.errors import SpecError


class BaseSpec(BaseModel):
    """Base of every spec: an unknown key is an error (a typo must not pass silently), assignments are
    validated, and validators are built on first use (`vizsla --help` reads the fields, never validates)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, defer_build=True)
    noun: ClassVar[str] = "spec"  # what a validation error calls it: "invalid job spec (FILE): ..."

    def to_yaml(self) -> str:
        """The spec as YAML, in field order."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def build(
        cls,
        config: dict[str, Any] | None = None,
        overrides: dict[str, Any] | None = None,
        source: str = "options",
    ) -> Self:
        """The spec from a YAML mapping and CLI overrides (overrides win), or a SpecError per bad field."""
        merged = deep_merge(config or {}, overrides or {})
        try:
            return cls.model_validate(merged)
        except ValidationError as exc:
            raise SpecError(format_validation_error(exc, f"invalid {cls.noun} ({source})")) from None


class BaseJobSpec(BaseSpec):
    """Base of the specs of a job that writes one directory: its name and the spec.yaml it keeps there."""

    if TYPE_CHECKING:  # declared by each subclass, in its own field order (the order spec.yaml is written in)
        name: str | None
        output: str

    @property
    def job_name(self) -> str:
        """Its `name`, else the name of its output folder."""
        return self.name or Path(self.output).name

    def to_job_yaml(self) -> str:
        """The spec.yaml its job folder keeps: output "." and a store inside the folder relative to it, so
        the folder can be moved, copied or renamed; `load_job_spec` reads it back where the folder is."""
        from vizsla.relocation import saved_spec_mapping

        return yaml.safe_dump(saved_spec_mapping(self.model_dump(mode="json")), sort_keys=False)


def format_validation_error(exc: ValidationError, heading: str, *, one_line: bool = False) -> str:
    """HEADING and one 'field.path: problem' per error, each on its own line or (ONE_LINE) joined by '; '."""
    problems = [f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()]
    if one_line:
        return f"{heading}: {'; '.join(problems)}"
    return "\n  ".join([f"{heading}:", *problems])


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """BASE with OVERRIDE on top, mappings merged key by key (YAML, then the flags given)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a spec YAML file into a dict, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"config file not found: {path}")
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SpecError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(content, dict):
        raise SpecError(f"config file {path} must hold a mapping (data:, model:, train:, ...)")
    return content
