"""The SageMaker training toolkit's contract for a script, laid out inside a Vizsla job directory.

The job directory mirrors /opt/ml (input/config/*.json, input/data/<channel>, model/, output/), and the
SM_* variables are built the way sagemaker-training-toolkit's `Environment.to_env_vars` builds them: key
"SM_" + name upper-cased (so `SM_HP_BATCH-SIZE` keeps its dash), strings as they are, None as "", anything
else as compact sorted JSON. See /work/shared/notes/sagemaker-script-contract.md, sections 1.2-1.4.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vizsla.errors import UserError
from vizsla.infra.io import atomic_write_json

log = logging.getLogger(__name__)

HOST = "algo-1"
INSTANCE_TYPE = "local"
INSTANCE_GROUP = "homogeneousCluster"
NETWORK_INTERFACE = "eth0"
LOG_LEVEL = 20  # logging.INFO, the toolkit's default sagemaker_container_log_level


@dataclass(frozen=True)
class ScriptLayout:
    """Absolute paths of a script job's SageMaker-style folders (all inside the job directory)."""

    root: Path

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    @property
    def config_dir(self) -> Path:
        return self.input_dir / "config"

    @property
    def data_dir(self) -> Path:
        return self.input_dir / "data"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def code_dir(self) -> Path:
        """The job's copy of the source dir, the script's cwd (SageMaker's /opt/ml/code)."""
        return self.root / "code"

    @property
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def intermediate_dir(self) -> Path:
        return self.output_dir / "intermediate"

    @property
    def failure(self) -> Path:
        return self.output_dir / "failure"

    @property
    def success(self) -> Path:
        return self.output_dir / "success"

    def channel(self, name: str) -> Path:
        return self.data_dir / name


@dataclass(frozen=True)
class ScriptCommand:
    """What runs: the resolved entry point, its folder (cwd), argv, and the module name."""

    entry_point: Path
    source_dir: Path
    user_entry_point: str  # relative to source_dir, as SM_USER_ENTRY_POINT shows it
    args: list[str]
    torchrun: list[str] = field(default_factory=list)  # torchrun's options when distributed, else empty
    python: str = sys.executable  # the interpreter that runs a .py entry point (--python, else ours)

    @property
    def module_name(self) -> str:
        return (
            Path(self.user_entry_point).stem
            if self.user_entry_point.endswith(".py")
            else self.user_entry_point
        )

    @property
    def argv(self) -> list[str]:
        # STK joins argv with spaces and runs it through a shell without quoting; we pass a list to
        # Popen, so a value with a space stays one argument (a deliberate, documented difference).
        if self.torchrun:  # the toolkit's torch_distributed launcher: torchrun [options] script.py args
            return [self.python, "-m", "torch.distributed.run", *self.torchrun, self.user_entry_point,
                    *self.args]  # fmt: skip
        if self.entry_point.suffix == ".py":
            return [self.python, self.user_entry_point, *self.args]
        return [str(self.entry_point), *self.args]


def env_value(value: Any) -> str:
    """The toolkit's encoding of an environment value: strings as they are, None as "", else JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def hyperparameter_args(hyperparameters: dict[str, Any]) -> list[str]:
    """['--key', str(value), ...] with keys sorted and spelled as given (STK `mapping.to_cmd_args`)."""
    args: list[str] = []
    for key in sorted(hyperparameters):
        args += [f"--{key}", _arg_text(hyperparameters[key])]
    return args


def _arg_text(value: Any) -> str:
    # str(): True -> "True", 1e-05 -> "1e-05"; lists/dicts as JSON like the SDK's encoding would give
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def resolve_command(
    entry_point: str, source_dir: str | None, hyperparameters: dict[str, Any]
) -> ScriptCommand:
    """Find the entry point (relative to source_dir when given); a missing file or folder is a UserError."""
    if source_dir is not None:
        folder = Path(source_dir).expanduser().resolve()
        if not folder.is_dir():
            raise UserError(f"source dir {source_dir} does not exist or is not a folder")
        candidate = folder / entry_point
        if not candidate.is_file() and Path(entry_point).is_file():
            candidate = Path(entry_point).resolve()  # a path from the cwd that lies inside source_dir
        if not candidate.is_file():
            raise UserError(f"entry point {entry_point} not found in source dir {folder}")
        try:
            relative = candidate.relative_to(folder).as_posix()
        except ValueError:
            raise UserError(f"entry point {candidate} is not inside source dir {folder}") from None
    else:
        candidate = Path(entry_point).expanduser().resolve()
        if not candidate.is_file():
            raise UserError(f"entry point {entry_point} does not exist")
        folder, relative = candidate.parent, candidate.name
    if candidate.suffix != ".py" and not os.access(candidate, os.X_OK):
        raise UserError(f"entry point {candidate} is neither a .py file nor executable", hint="chmod +x it")
    return ScriptCommand(candidate, folder, relative, hyperparameter_args(hyperparameters))


def resolve_channels(channels: dict[str, str], *, progress: bool = True) -> dict[str, Path]:
    """Local folders for the channels: local paths must exist; fsspec URIs are copied to the dataset cache."""
    from vizsla.data.sources import is_remote, materialize

    resolved: dict[str, Path] = {}
    for name, location in channels.items():
        if is_remote(location):
            resolved[name] = materialize(location, progress=progress)
            continue
        path = materialize(location)  # a local path: just resolved
        if not path.exists():
            raise UserError(f"channel '{name}': {path} does not exist")
        resolved[name] = path
    return resolved


def count_gpus() -> int:
    """GPUs the script will see, without importing torch: CUDA_VISIBLE_DEVICES, else `nvidia-smi -L` lines."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        listing = subprocess.run([smi, "--list-gpus"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    if listing.returncode != 0:
        return 0
    return sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))


def resource_config() -> dict[str, Any]:
    """resourceconfig.json of a one-host cluster."""
    return {
        "current_host": HOST,
        "current_instance_type": INSTANCE_TYPE,
        "current_group_name": INSTANCE_GROUP,
        "hosts": [HOST],
        "instance_groups": [
            {"instance_group_name": INSTANCE_GROUP, "instance_type": INSTANCE_TYPE, "hosts": [HOST]}
        ],
        "network_interface_name": NETWORK_INTERFACE,
    }


def input_data_config(channels: dict[str, Any]) -> dict[str, Any]:
    """inputdataconfig.json: every channel in File mode, fully replicated."""
    return {
        name: {
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        }
        for name in sorted(channels)
    }


def write_layout(layout: ScriptLayout, channels: dict[str, Path], hyperparameters: dict[str, Any]) -> None:
    """Create the folders, the three config files and one symlink per channel to the user's data."""
    for folder in (
        layout.config_dir,
        layout.data_dir,
        layout.model_dir,
        layout.output_data_dir,
        layout.intermediate_dir,
    ):
        folder.mkdir(parents=True, exist_ok=True)
    # The SDK JSON-encodes every value (strings get quotes); the toolkit json.loads them back.
    encoded = {key: json.dumps(value) for key, value in hyperparameters.items()}
    atomic_write_json(layout.config_dir / "hyperparameters.json", encoded)
    atomic_write_json(layout.config_dir / "inputdataconfig.json", input_data_config(channels))
    atomic_write_json(layout.config_dir / "resourceconfig.json", resource_config())
    for name, target in channels.items():
        link = layout.channel(name)
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            shutil.rmtree(link)
        link.symlink_to(target, target_is_directory=target.is_dir())
    for stale in layout.data_dir.iterdir():  # channels of an earlier run of this job that are gone now
        if stale.name not in channels and stale.is_symlink():
            stale.unlink()


def training_env(
    layout: ScriptLayout,
    command: ScriptCommand,
    channels: dict[str, Any],
    hyperparameters: dict[str, Any],
    job_name: str,
    num_gpus: int,
) -> dict[str, Any]:
    """The toolkit's Environment properties (SM_TRAINING_ENV); each also becomes one SM_* variable."""
    resources = resource_config()
    groups = resources["instance_groups"]
    return {
        # The SDK's framework flags the toolkit read: here the one that chose the torchrun launcher.
        "additional_framework_parameters": (
            {"sagemaker_torch_distributed_enabled": True} if command.torchrun else {}
        ),
        "channel_input_dirs": {name: str(layout.channel(name)) for name in sorted(channels)},
        "current_host": HOST,
        "current_instance_group": INSTANCE_GROUP,
        "current_instance_group_hosts": [HOST],
        "current_instance_type": INSTANCE_TYPE,
        "distribution_hosts": [],
        "distribution_instance_groups": [],
        "framework_module": None,
        "hosts": [HOST],
        "hyperparameters": hyperparameters,
        "input_config_dir": str(layout.config_dir),
        "input_data_config": input_data_config(channels),
        "input_dir": str(layout.input_dir),
        "instance_groups": [INSTANCE_GROUP],
        "instance_groups_dict": {g["instance_group_name"]: g for g in groups},
        "is_hetero": False,
        "is_master": True,
        "is_modelparallel_enabled": None,
        "is_smddpmprun_installed": False,
        "is_smddprun_installed": False,
        "job_name": job_name,
        "log_level": LOG_LEVEL,
        "master_hostname": HOST,
        "model_dir": str(layout.model_dir),
        "module_dir": str(command.source_dir),
        "module_name": command.module_name,
        "network_interface_name": NETWORK_INTERFACE,
        "num_cpus": multiprocessing.cpu_count(),
        "num_gpus": num_gpus,
        "num_neurons": 0,
        "output_data_dir": str(layout.output_data_dir),
        "output_dir": str(layout.output_dir),
        "output_intermediate_dir": str(layout.intermediate_dir),
        "resource_config": resources,
        "user_entry_point": command.user_entry_point,
    }


# Environment properties exported one by one (STK `to_env_vars`), under these SM_* names.
_ENV_NAMES = {
    "hosts": "HOSTS",
    "network_interface_name": "NETWORK_INTERFACE_NAME",
    "hyperparameters": "HPS",
    "user_entry_point": "USER_ENTRY_POINT",
    "additional_framework_parameters": "FRAMEWORK_PARAMS",
    "resource_config": "RESOURCE_CONFIG",
    "input_data_config": "INPUT_DATA_CONFIG",
    "output_data_dir": "OUTPUT_DATA_DIR",
    "current_host": "CURRENT_HOST",
    "current_instance_type": "CURRENT_INSTANCE_TYPE",
    "current_instance_group": "CURRENT_INSTANCE_GROUP",
    "current_instance_group_hosts": "CURRENT_INSTANCE_GROUP_HOSTS",
    "instance_groups": "INSTANCE_GROUPS",
    "instance_groups_dict": "INSTANCE_GROUPS_DICT",
    "distribution_instance_groups": "DISTRIBUTION_INSTANCE_GROUPS",
    "is_hetero": "IS_HETERO",
    "module_name": "MODULE_NAME",
    "log_level": "LOG_LEVEL",
    "framework_module": "FRAMEWORK_MODULE",
    "input_dir": "INPUT_DIR",
    "input_config_dir": "INPUT_CONFIG_DIR",
    "output_dir": "OUTPUT_DIR",
    "num_cpus": "NUM_CPUS",
    "num_gpus": "NUM_GPUS",
    "num_neurons": "NUM_NEURONS",
    "model_dir": "MODEL_DIR",
    "module_dir": "MODULE_DIR",
    "output_intermediate_dir": "OUTPUT_INTERMEDIATE_DIR",
}


def sm_env_vars(training: dict[str, Any], args: list[str]) -> dict[str, str]:
    """SM_* variables from the Environment properties, plus channels, hyperparameters and the argv."""
    env = {f"SM_{name}": env_value(training[key]) for key, name in _ENV_NAMES.items()}
    env["SM_CHANNELS"] = env_value(sorted(training["channel_input_dirs"]))
    for name, path in training["channel_input_dirs"].items():
        env[f"SM_CHANNEL_{name.upper()}"] = path
    for key, value in training["hyperparameters"].items():
        env[f"SM_HP_{key.upper()}"] = env_value(value)
    env["SM_USER_ARGS"] = env_value(args)
    env["SM_TRAINING_ENV"] = env_value(training)
    return env


def script_environment(
    layout: ScriptLayout,
    command: ScriptCommand,
    channels: dict[str, Any],
    hyperparameters: dict[str, Any],
    job_name: str,
    extra: dict[str, str] | None = None,
    *,
    num_gpus: int | None = None,
    sagemaker_shim: bool = True,
) -> dict[str, str]:
    """The child's whole environment: ours, the SM_* contract, job names, Python settings, user extras.

    SAGEMAKER_SHIM: put Vizsla's SDK-shaped API on the path as `sagemaker` (off where the script's
    interpreter has the real SDK installed)."""
    gpus = count_gpus() if num_gpus is None else num_gpus
    training = training_env(layout, command, channels, hyperparameters, job_name, gpus)
    env = dict(os.environ)
    env.update(sm_env_vars(training, command.args))
    env.update(
        {
            "TRAINING_JOB_NAME": job_name,
            "SAGEMAKER_JOB_NAME": job_name,
            "CURRENT_HOST": HOST,
            "PYTHONUNBUFFERED": "1",  # the DLC sets both; unbuffered output lets metrics stream line by line
            "PYTHONIOENCODING": "UTF-8",
        }
    )
    paths = [*_shim_paths(sagemaker_shim), str(command.source_dir)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    from vizsla.scriptmode.interpreter import same_interpreter, vizsla_import_root

    if not same_interpreter(command.python):
        # The shims import vizsla; another interpreter finds it here, after its own packages.
        paths.append(vizsla_import_root())
    env["PYTHONPATH"] = os.pathsep.join(paths)
    # The interpreter's bin first, as in SageMaker's containers: a script's `pip install` or `python` in a
    # subprocess reaches the interpreter that runs the script, not whichever is first on the user's PATH.
    env["PATH"] = path_with_first(str(Path(command.python).parent), env.get("PATH", ""))
    env.update(extra or {})
    return env


def path_with_first(folder: str, path: str) -> str:
    """PATH with FOLDER first (once), the rest in their order."""
    rest = [entry for entry in path.split(os.pathsep) if entry and entry != folder]
    return os.pathsep.join([folder, *rest])


def prepare_handler_process() -> None:
    """Give an inference handler in this process what SageMaker's inference containers give it.

    The containers ship smdebug and the sagemaker SDK, and their Python's bin is first on PATH, so handlers
    `import smdebug` / `import sagemaker` at the top and `pip install` in model_fn. The shims go at the END
    of sys.path: an installed smdebug or sagemaker still wins. sys.executable's folder is not resolved: in a
    venv it is the venv's bin (resolving would follow the symlink to the base interpreter).
    """
    for folder in _shim_paths(sagemaker_shim=True):
        if folder not in sys.path:
            sys.path.append(folder)
    os.environ["PATH"] = path_with_first(str(Path(sys.executable).parent), os.environ.get("PATH", ""))


def _shim_paths(sagemaker_shim: bool = True) -> list[str]:
    """The smdebug shim's folder, so `import smdebug` works in the script (never in this process), and
    the `sagemaker` shim's folder (SageMaker's PyTorch containers ship the SDK)."""
    paths = []
    try:
        from vizsla.scriptmode.smdebug_shim import shim_path
    except ImportError:
        log.warning("vizsla.scriptmode.smdebug_shim is not available: scripts cannot import smdebug")
    else:
        paths.append(shim_path())
    if sagemaker_shim:
        from vizsla.scriptmode.sagemaker_shim import sagemaker_shim_path

        paths.append(sagemaker_shim_path())
    return paths
