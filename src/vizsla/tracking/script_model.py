"""A script job's MLflow model: its model folder and inference code as a pyfunc LoggedModel of its run.

A built-in job's model is a vizsla model folder (tracking/registry.py `log_job_model`); a script job's is
whatever its script saved into SM_MODEL_DIR, which SageMaker serves with an inference script. The logged
model (`runs:/<run id>/model`, model type "sagemaker-script") holds that folder and the inference code, and
its pyfunc (tracking/script_pyfunc.py) answers request bodies as `vizsla serve JOB --entry-point` does.

Which inference code, first found: the spec's `inference_entry_point` (relative to the source dir), the
source dir's inference.py, code/inference.py inside the model folder (SageMaker's model.tar.gz layout),
else a TorchScript model.pt served with the PyTorch inference toolkit's defaults. None: no model is logged,
and the job's log and result.json say why; tracking never fails the job.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vizsla.jobdir import JobDir

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from vizsla.scriptmode.spec import ScriptJobSpec

log = logging.getLogger("vizsla.tracking")

MODEL_TYPE = "sagemaker-script"
DEFAULT_ENTRY_POINT = "inference.py"  # SageMaker's convention, beside train_model.py or in model/code/
TORCHSCRIPT_FILE = "model.pt"  # what the PyTorch inference toolkit's default model_fn loads
MAX_CODE_FILES = 300  # a source folder larger than this (or MAX_CODE_BYTES) contributes only the entry
MAX_CODE_BYTES = 20 * 2**20  # point's folder's top-level .py files: code, never a dataset beside it
_SKIP_DIRS = {"__pycache__", "node_modules", "site-packages", "venv"}  # and hidden ones, and venvs


class NoScriptModel(Exception):
    """Why a script job has no model to log (no inference code, nothing saved); str() is the reason."""


@dataclass(frozen=True)
class InferenceCode:
    """How the job's model is served: ENTRY_POINT (relative to FOLDER) or, both None, the toolkit's
    defaults on a TorchScript model.pt; FOUND says which rule picked it."""

    found: str  # "inference_entry_point", "source_dir", "model_code" or "torchscript"
    folder: Path | None
    entry_point: str | None

    def describe(self) -> str:
        if self.entry_point is None:
            return f"the PyTorch inference toolkit's defaults on {TORCHSCRIPT_FILE}"
        return str(self.folder / self.entry_point) if self.folder else self.entry_point


def is_script_job(job: JobDir) -> bool:
    """Whether the folder holds a script job (its spec.yaml has kind: script or an entry_point)."""
    from vizsla.base_spec import read_yaml
    from vizsla.errors import UserError
    from vizsla.scriptmode.spec import is_script_spec

    try:
        return is_script_spec(read_yaml(job.spec))
    except UserError:
        return False


def resolve_inference_code(job: JobDir, spec: ScriptJobSpec) -> InferenceCode:
    """The job's inference code by the rules of the module's docstring; NoScriptModel naming why none."""
    model_dir = job.model_dir
    if not model_dir.is_dir() or not any(model_dir.iterdir()):
        raise NoScriptModel(f"the script saved nothing into SM_MODEL_DIR ({model_dir})")
    folders = _source_folders(job, spec)
    if spec.inference_entry_point:
        for folder in folders:
            if (folder / spec.inference_entry_point).is_file():
                return InferenceCode("inference_entry_point", folder, spec.inference_entry_point)
        where = " or ".join(str(f) for f in folders) or "the source dir"
        raise NoScriptModel(f"inference_entry_point {spec.inference_entry_point} is not in {where}")
    for folder in folders:
        if (folder / DEFAULT_ENTRY_POINT).is_file():
            return InferenceCode("source_dir", folder, DEFAULT_ENTRY_POINT)
    if (model_dir / "code" / DEFAULT_ENTRY_POINT).is_file():
        return InferenceCode("model_code", model_dir / "code", DEFAULT_ENTRY_POINT)
    if _is_torchscript(model_dir / TORCHSCRIPT_FILE):
        return InferenceCode("torchscript", None, None)
    raise NoScriptModel(
        f"no inference code: no --inference-entry-point, no {DEFAULT_ENTRY_POINT} in the source dir, no "
        f"code/{DEFAULT_ENTRY_POINT} in the model folder and no TorchScript {TORCHSCRIPT_FILE} in it; add "
        f"{DEFAULT_ENTRY_POINT} (model_fn, and input_fn/predict_fn/output_fn as needed) beside the script"
    )


def _source_folders(job: JobDir, spec: ScriptJobSpec) -> list[Path]:
    """Where the source dir is: the job's copy that ran (SageMaker's /opt/ml/code), then the user's."""
    from vizsla.scriptmode.environment import ScriptLayout

    folders = [ScriptLayout(job.root).code_dir]
    if spec.source_dir:
        folders.append(Path(spec.source_dir).expanduser())
    return [f for f in folders if f.is_dir()]


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive (a zip with code/ and constants.pkl), not a pickled module or state dict."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def copy_code(code: InferenceCode, out: Path) -> list[str]:
    """Copy the entry point and the Python modules beside and below it into OUT; the relative paths.

    Only .py files and requirements.txt, never data; a folder over MAX_CODE_FILES / MAX_CODE_BYTES gives
    only the entry point's own folder's top-level .py files."""
    assert code.folder is not None and code.entry_point is not None
    found = _python_files(code.folder)
    if found is None:
        top = (code.folder / code.entry_point).parent
        found = [p.relative_to(code.folder).as_posix() for p in sorted(top.glob("*.py")) if p.is_file()]
        log.warning("%s holds too much to log as code; logging only the .py files of %s", code.folder, top)
    names = sorted({*found, code.entry_point})
    for name in names:
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(code.folder / name, target)
    return names


def _python_files(folder: Path) -> list[str] | None:
    """The .py files under FOLDER and its requirements.txt (relative paths), or None past the bounds."""
    names: list[str] = []
    total = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not _skipped(Path(root) / d)]
        for name in files:
            path = Path(root) / name
            if path.suffix == ".py" or (name == "requirements.txt" and Path(root) == folder):
                names.append(path.relative_to(folder).as_posix())
                total += path.stat().st_size
        if len(names) > MAX_CODE_FILES or total > MAX_CODE_BYTES:
            return None
    return names


def _skipped(path: Path) -> bool:
    """Hidden folders, caches, installed packages and virtual environments: not the job's code."""
    name = path.name
    return name.startswith(".") or name in _SKIP_DIRS or path.is_symlink() or (path / "pyvenv.cfg").is_file()


def requirements(code_dir: Path | None) -> list[str]:
    """vizsla, torch, numpy, pandas (pinned as installed here) and the code's own requirements.txt."""
    from vizsla.tracking.registry import pinned_requirements
    from vizsla.tracking.script_pyfunc import PIP_REQUIREMENTS

    pinned = pinned_requirements(("vizsla", *PIP_REQUIREMENTS))
    listed = code_dir / "requirements.txt" if code_dir else None
    if listed is not None and listed.is_file():
        for line in listed.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-") and line not in pinned:
                pinned.append(line)
    return pinned


def log_script_model(client: MlflowClient, run_id: str, job: JobDir, spec: ScriptJobSpec,
                     *, step: int = 0) -> tuple[str, InferenceCode]:
    """Log the job's model as the pyfunc LoggedModel "model" of RUN_ID; (model id, the inference code).

    NoScriptModel when the job has no inference code or saved no model."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    code = resolve_inference_code(job, spec)
    experiment_id = client.get_run(run_id).info.experiment_id
    with tempfile.TemporaryDirectory(prefix="vizsla-script-pyfunc-") as tmp:
        artifacts = _artifacts(code, job, Path(tmp))
        logged = client.create_logged_model(
            experiment_id, name=_model_name(), source_run_id=run_id, model_type=MODEL_TYPE,
            tags={"vizsla.kind": "script", "vizsla.inference": code.found},
        )
        try:
            _save_and_upload(client, logged, run_id, Path(tmp), artifacts, requirements(code.folder))
            client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step)])
            client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        except BaseException:
            client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
            raise
    return logged.model_id, code


def _model_name() -> str:
    from vizsla.tracking.registry import MODEL_NAME

    return MODEL_NAME


def _artifacts(code: InferenceCode, job: JobDir, tmp: Path) -> dict[str, str]:
    """The pyfunc's artifacts: the model folder, the copied code (none for TorchScript) and the manifest."""
    from vizsla.tracking import script_pyfunc as sp

    artifacts = {sp.MODEL_ARTIFACT: str(job.model_dir)}
    files: list[str] = []
    if code.entry_point is not None:
        files = copy_code(code, tmp / sp.CODE_ARTIFACT)
        artifacts[sp.CODE_ARTIFACT] = str(tmp / sp.CODE_ARTIFACT)
    manifest = tmp / f"{sp.MANIFEST_ARTIFACT}.json"
    manifest.write_text(json.dumps({"entry_point": code.entry_point, "found": code.found, "files": files},
                                   indent=2) + "\n", encoding="utf-8")
    artifacts[sp.MANIFEST_ARTIFACT] = str(manifest)
    return artifacts


def _save_and_upload(client: MlflowClient, logged: Any, run_id: str, tmp: Path, artifacts: dict[str, str],
                     pip_requirements: list[str]) -> None:
    """mlflow.pyfunc.save_model as models from code, then upload it as the LoggedModel's artifacts."""
    import mlflow.pyfunc
    from mlflow.models import Model

    from vizsla.tracking import script_pyfunc as sp

    local = tmp / "mlflow_model"
    mlflow_model = Model(artifact_path=logged.artifact_location, model_uuid=logged.model_id, run_id=run_id,
                         model_id=logged.model_id)
    source = tmp / "vizsla_script_model.py"
    source.write_text(sp.MODEL_CODE, encoding="utf-8")
    with warnings.catch_warnings():  # no input example on purpose: which bodies it takes is the script's
        warnings.filterwarnings("ignore", message=".*input example was not provided", category=UserWarning)
        mlflow.pyfunc.save_model(
            str(local), python_model=str(source), mlflow_model=mlflow_model, artifacts=artifacts,
            signature=sp.signature(), pip_requirements=pip_requirements,
        )
    client.log_model_artifacts(logged.model_id, str(local))


def log_finished_script_model(client: MlflowClient, run_id: str, job: JobDir, spec: ScriptJobSpec,
                              result: dict[str, Any]) -> bool:
    """Log a Completed script job's model (and register it when the spec asks); whether it was logged.

    Records result["mlflow_model"] (logged, and the model id, or why not) and the model id in
    result["mlflow"]; a job without a model gets one note in its log. Never raises: tracking never
    fails the job."""
    try:
        model_id, code = log_script_model(client, run_id, job, spec)
    except NoScriptModel as exc:
        return _not_logged(job, result, str(exc))
    except Exception as exc:  # noqa: BLE001 - tracking never fails the job
        return _not_logged(job, result, f"could not log the model to MLflow: {exc!r}")
    result["mlflow_model"] = {"logged": True, "model_id": model_id, "inference": code.describe()}
    result.setdefault("mlflow", {})["model_id"] = model_id
    log.info("logged the MLflow model %s (%s)", model_id, code.describe())
    name = spec.tracking.registered_model_name
    if name:
        from vizsla.tracking.registry import register_model

        try:
            version = register_model(client, name, model_id, run_id)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not register the model as %s: %r", name, exc)
        else:
            result["mlflow"]["registered"] = {"name": name, "version": version}
    return True


def _not_logged(job: JobDir, result: dict[str, Any], reason: str) -> bool:
    result["mlflow_model"] = {"logged": False, "reason": reason}
    message = f"no MLflow model logged: {reason}"
    log.warning(message)
    note_in_log(job, f"warning: {message}")
    return False


def note_in_log(job: JobDir, message: str) -> None:
    """One line of Vizsla's own in train.log (marked as the runner marks its notes), after the script."""
    from vizsla.scriptmode.streaming import VIZSLA_PREFIX

    try:
        with job.log.open("a", encoding="utf-8") as handle:
            handle.write(f"{VIZSLA_PREFIX}{message}\n")
    except OSError as exc:
        log.warning("could not write to %s: %r", job.log, exc)


def log_script_job_model(client: MlflowClient, run_id: str, job: JobDir) -> str:
    """The model of the finished script job in JOB (for `vizsla models register`), logged now; its id.

    RegistryError when the job did not complete or has no inference code."""
    from vizsla.scriptmode.spec import load_script_job_spec
    from vizsla.tracking.registry import RegistryError

    try:
        status = json.loads(job.result.read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError, AttributeError):
        status = None
    if status != "Completed":
        raise RegistryError(f"{job.root} is a script job that did not complete (status {status}): no model "
                            "to register")
    try:
        model_id, _ = log_script_model(client, run_id, job, load_script_job_spec(job.root))
    except NoScriptModel as exc:
        raise RegistryError(f"{job.root} has no MLflow model to register: {exc}",
                            hint=f"add {DEFAULT_ENTRY_POINT} beside the training script, or pass "
                            "--inference-entry-point when training") from None
    return model_id
