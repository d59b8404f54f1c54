"""A job's MLflow model (an MLflow 3 LoggedModel of its run) and the Model Registry: log, register, alias,
and resolve `models:/NAME@ALIAS` / `models:/NAME/VERSION` to a local vizsla model folder.

Everything goes through an `MlflowClient` and explicit ids, never mlflow's global active run or tracking
URI: a tuning job logs its best trial's model from a process that tracks other runs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vizsla.errors import UserError
from vizsla.jobdir import JobDir

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger("vizsla.tracking")

MODEL_NAME = "model"  # the LoggedModel's name: `runs:/<run id>/model` finds it by this name
REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")
DEFAULT_TRACKING_URI = "sqlite:///runs/mlflow.db"  # `vizsla train -o runs/NAME`'s default store


class RegistryError(UserError):
    """A registry URI, model name, version or alias that the MLflow store does not hold."""


def log_job_model(client: MlflowClient, run_id: str, job_dir: JobDir, *, step: int = 0) -> str:
    """Log the job's model as a pyfunc LoggedModel of RUN_ID (`runs:/<run id>/model`); its model id."""
    import mlflow.pyfunc
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    from vizsla.tracking import pyfunc_model as pm

    experiment_id = client.get_run(run_id).info.experiment_id
    with tempfile.TemporaryDirectory(prefix="vizsla-pyfunc-") as tmp:
        folder = Path(tmp) / pm.MODEL_ARTIFACT
        manifest = pm.prepare_model_folder(job_dir.model_dir, folder)
        logged = client.create_logged_model(
            experiment_id, name=MODEL_NAME, source_run_id=run_id, model_type="image-classifier",
            tags={"vizsla.runner": manifest["runner"]},
        )
        try:
            local = Path(tmp) / "mlflow_model"
            mlflow_model = Model(artifact_path=logged.artifact_location, model_uuid=logged.model_id,
                                 run_id=run_id, model_id=logged.model_id)
            example = pm.example_image(manifest["preprocessing"], _first_image(job_dir))
            code = Path(tmp) / "vizsla_image_classifier.py"
            code.write_text(pm.MODEL_CODE, encoding="utf-8")
            mlflow.pyfunc.save_model(
                str(local), python_model=str(code), mlflow_model=mlflow_model,
                artifacts={pm.MODEL_ARTIFACT: str(folder)}, signature=pm.signature(manifest["labels"]),
                input_example=pm.input_example(example), pip_requirements=_requirements(),
            )
            client.log_model_artifacts(logged.model_id, str(local))
            client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step)])
            client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        except BaseException:
            client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
            raise
    return logged.model_id


def preload_model_logging() -> None:
    """Import MLflow's pyfunc flavour and build the installed-packages map that save_model's requirements
    check reads (~0.7 s) ahead of a job, in a process that forks jobs (the resident worker:
    vizsla.resident.server). The map is a private part of MLflow: when it moves, the job builds it itself,
    as without the preload."""
    try:
        import mlflow.pyfunc  # noqa: F401 - the import is the point
        from mlflow.utils import requirements_utils

        requirements_utils._init_packages_to_modules_map()
    except Exception:  # noqa: BLE001 - an optimisation only
        pass


def _requirements() -> list[str]:
    """What the pyfunc imports: vizsla (its serving runtime, no torch) and the libraries under it."""
    from vizsla.tracking.pyfunc_model import PIP_REQUIREMENTS

    return pinned_requirements(("vizsla", *PIP_REQUIREMENTS))


def pinned_requirements(names: tuple[str, ...]) -> list[str]:
    """NAME==version as installed here for each of NAMES (a package not installed: its bare name)."""
    import importlib.metadata

    pinned = []
    for name in names:
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(name)
    return pinned


def _first_image(job_dir: JobDir) -> Path | None:
    """One of the job's validation images (data/split.csv, relative to the report's root), for the
    model's input example; None when the records are missing."""
    import csv
    import json

    try:
        root = Path(json.loads(job_dir.data_report.read_text(encoding="utf-8"))["root"])
        with open(job_dir.split_manifest, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, ValueError, KeyError):
        return None
    row = next((r for r in rows if r.get("split") == "valid"), rows[0] if rows else None)
    return root / row["path"] if row else None


def register_model(client: MlflowClient, name: str, model_id: str, run_id: str | None = None,
                   alias: str | None = None) -> str:
    """A new version of registered model NAME (created when missing) from MODEL_ID; its version."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name, tags={"vizsla": "image-classifier"})
        except MlflowException:  # created meanwhile by another process
            client.get_registered_model(name)
    # The source is the model's storage location, not models:/<id>: a SQL registry resolves that through
    # the process-wide tracking URI (MLflow's TODO), which need not be this client's store.
    location = client.get_logged_model(model_id).artifact_location
    version = client.create_model_version(name, source=location, run_id=run_id, model_id=model_id)
    _link_version(client, model_id, name, str(version.version))
    if alias:
        set_alias(client, name, str(version.version), alias)
    return str(version.version)


def _link_version(client: MlflowClient, model_id: str, name: str, version: str) -> None:
    """Name the version on its LoggedModel (the tag mlflow.register_model sets: the UI links the two)."""
    import json

    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    earlier = client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS)
    versions = [*(json.loads(earlier) if earlier else []), {"name": name, "version": version}]
    client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(versions)})


def registered_version(client: MlflowClient, model_id: str, name: str) -> str | None:
    """The version of NAME already made from MODEL_ID (its LoggedModel's tag), or None: a resumed tuning
    job does not register its best trial's model twice."""
    import json

    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    tag = client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS)
    versions = [v for v in (json.loads(tag) if tag else []) if v.get("name") == name]
    return str(versions[-1]["version"]) if versions else None


def set_alias(client: MlflowClient, name: str, version: str, alias: str) -> None:
    """Point ALIAS of registered model NAME at VERSION; RegistryError naming what is missing."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(name, version)
        client.set_registered_model_alias(name, alias, version)
    except MlflowException as exc:
        raise RegistryError(f"cannot set alias {alias!r} on {name} version {version}: {exc.message}",
                            hint="`vizsla models versions NAME` lists the versions") from None


def job_model_id(client: MlflowClient, run_id: str) -> str | None:
    """The model id of the LoggedModel named "model" that RUN_ID logged, or None."""
    run = client.get_run(run_id)
    for output in (run.outputs.model_outputs if run.outputs else []) or []:
        if client.get_logged_model(output.model_id).name == MODEL_NAME:
            return output.model_id
    return None


def register_job(job_dir: str | Path, name: str, alias: str | None = None) -> tuple[str, str]:
    """Register the MLflow model of the finished job in JOB_DIR (logging it first when its run has none,
    as a tuning trial's) as a new version of NAME in the job's own store; (version, model id)."""
    client, run_id, model_id = ensure_job_model(job_dir)
    return register_model(client, name, model_id, run_id, alias), model_id


def ensure_job_model(job_dir: str | Path) -> tuple[MlflowClient, str, str]:
    """The MLflow model of the finished job in JOB_DIR, logged now when its run has none (a tuning
    trial defers it); (client of the job's store, run id, model id)."""
    import json

    job = JobDir(job_dir)
    try:
        saved = json.loads(job.tracking.read_text(encoding="utf-8"))
        tracking_uri, run_id = saved["tracking_uri"], saved["run_id"]
    except (OSError, ValueError, KeyError, TypeError):
        raise RegistryError(f"{job.root} has no MLflow run ({job.tracking} is missing or unreadable)",
                            hint="train with tracking on (without --no-tracking)") from None
    if not job.model_dir.is_dir():
        raise RegistryError(f"{job.root} has no model folder ({job.model_dir}): did the job complete?")
    from vizsla.tracking.mlflow_run import _create_client

    client = _create_client(tracking_uri)
    model_id = job_model_id(client, run_id) or _log_model_of(client, run_id, job)
    return client, run_id, model_id


def _log_model_of(client: MlflowClient, run_id: str, job: JobDir) -> str:
    """log_job_model, or for a script job its model folder with its inference code (script_model.py)."""
    from vizsla.tracking.script_model import is_script_job, log_script_job_model

    if is_script_job(job):
        return log_script_job_model(client, run_id, job)
    return log_job_model(client, run_id, job)


def registry_client(tracking_uri: str | None) -> MlflowClient:
    """A client of TRACKING_URI, else $MLFLOW_TRACKING_URI, else ./runs/mlflow.db when it exists."""
    from vizsla.tracking.mlflow_run import _create_client

    store = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not store:
        if not Path("runs/mlflow.db").is_file():
            raise RegistryError("no MLflow store given and no runs/mlflow.db here",
                                hint="pass --tracking-uri (or set MLFLOW_TRACKING_URI)")
        store = DEFAULT_TRACKING_URI
    return _create_client(store)


def list_versions(client: MlflowClient, name: str) -> list[dict[str, Any]]:
    """The versions of registered model NAME, newest first; RegistryError when there is no such model."""
    from mlflow.exceptions import MlflowException

    try:
        aliases = client.get_registered_model(name).aliases  # {alias: version}
        found = [client.get_model_version(name, v.version)  # search results lack the model ids
                 for v in client.search_model_versions(f"name = '{name}'")]
    except MlflowException as exc:
        raise RegistryError(f"no registered model {name!r} to list: {exc.message}") from None
    rows = [{"version": str(v.version), "run_id": v.run_id, "model_id": getattr(v, "model_id", None),
             "aliases": sorted(a for a, version in aliases.items() if str(version) == str(v.version))}
            for v in found]
    return sorted(rows, key=lambda row: -int(row["version"]))


def is_registry_uri(text: str) -> bool:
    return str(text).startswith("models:/")


def resolve_registry_uri(uri: str, tracking_uri: str | None = None, cache: Path | None = None) -> Path:
    """The local vizsla model folder of `models:/NAME@ALIAS` or `models:/NAME/VERSION`, downloaded once
    into the vizsla cache (`mlflow-models/`); RegistryError when the store does not hold it."""
    from mlflow.exceptions import MlflowException

    from vizsla.tracking.pyfunc_model import MODEL_ARTIFACT

    match = REGISTRY_URI.match(uri)
    if match is None:
        raise RegistryError(f"not a registry URI: {uri}", hint="write models:/NAME@ALIAS or models:/NAME/3")
    client = registry_client(tracking_uri)
    store = str(client.tracking_uri)
    try:
        if match["alias"]:
            version = client.get_model_version_by_alias(match["name"], match["alias"])
        else:
            version = client.get_model_version(match["name"], match["version"])
        location = client.get_logged_model(version.model_id).artifact_location if version.model_id else None
    except MlflowException as exc:
        raise RegistryError(f"{uri} is not in the MLflow registry at {store}: {exc.message}",
                            hint="pass --tracking-uri (or set MLFLOW_TRACKING_URI) to the store that holds "
                            "it; `vizsla models register JOB NAME` registers a job") from None
    target = _download(location or str(version.source), store, version, cache)
    folder = next((p.parent for p in sorted(target.rglob("pyfunc.json")) if p.parent.name == MODEL_ARTIFACT),
                  target / "artifacts" / MODEL_ARTIFACT)  # artifacts/ may sit one level down
    if not (folder / "config.json").is_file():
        _refuse_script_model(target, uri, version)
        raise RegistryError(f"{uri} (version {version.version}) is not a vizsla model: no {MODEL_ARTIFACT} "
                            f"in its artifacts ({target})")
    return folder


def _refuse_script_model(target: Path, uri: str, version: Any) -> None:
    """A script job's model (script_model.py) is served from its job folder, not from the registry."""
    from vizsla.tracking.script_model import MODEL_TYPE
    from vizsla.tracking.script_pyfunc import MANIFEST_ARTIFACT

    if any(target.rglob(f"{MANIFEST_ARTIFACT}.json")):
        raise RegistryError(f"{uri} (version {version.version}) is a script job's model ({MODEL_TYPE}): "
                            "`vizsla serve` does not serve it from the registry",
                            hint="serve the job folder: vizsla serve JOB --entry-point inference.py, or load "
                            "it with mlflow.pyfunc.load_model")


def _download(location: str, store: str, version: Any, cache: Path | None) -> Path:
    """The model's artifacts in the cache (a complete download is kept; a partial one is redone)."""
    import mlflow.artifacts

    from vizsla.cache import cache_dir

    key = hashlib.sha256(f"{store}|{version.name}|{version.version}|{location}".encode()).hexdigest()[:16]
    target = (cache or cache_dir("mlflow-models")) / f"{_safe(version.name)}-v{version.version}-{key}"
    if (target / ".complete").is_file():
        return target
    partial = Path(tempfile.mkdtemp(prefix=".download-", dir=_parent(target)))
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(partial), tracking_uri=store)
        (partial / ".complete").write_text(f"{version.name} version {version.version}\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log.info("downloaded %s version %s to %s", version.name, version.version, target)
    return target


def _parent(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.parent


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64]
