"""The resident worker: load the heavy modules once, then fork a child per command; exit when idle.

`python -m vizsla.resident.server SOCKET SYS_PATH_JSON`, started by vizsla.resident.client with the
command's environment. The worker itself never runs torch code: a process that forks must not have started
OpenMP's or CUDA's threads, so only imports happen here, and every job runs in a fresh child."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import NoReturn

from vizsla.resident import identity, protocol

# What `vizsla train` imports before its data are checked, in two parts: the worker forks the first command
# (which waited for it) once the first part is loaded, and loads the second while that job runs; a job
# forked before it imports those modules itself, on a thread beside its data checks, as a local job does.
JOB_MODULES = (
    "numpy",
    "PIL.Image",
    "PIL.JpegImagePlugin",
    "fsspec",
    "torch",
    "torch.optim",
    "torch._dynamo",  # imported by torch.optim's first step and by torchvision.ops: ~1.5 s
    "torchvision",
    "timm",
    "timm.optim",
    "timm.scheduler",
    "onnxruntime",
    "vizsla.cli.app",
    "vizsla.cli.script_train",
    "vizsla.jobs",
    "vizsla.training.trainer",
    "vizsla.training.setup",
    "vizsla.training.components",
    "vizsla.training.recipe",
    "vizsla.data.prepare",
    "vizsla.data.sources",
    "vizsla.data.features",
    "vizsla.data.quantize",
    "vizsla.models",
    "vizsla.models.classifier",
    "vizsla.models.io",
    "vizsla.tuning.space",
)
# What a job needs at its end: plots, report, the model's export, MLflow (setup.LATE_IMPORTS too).
FINISHING_MODULES = (
    "sqlalchemy.dialects.sqlite",
    "vizsla.serving.export",
    "vizsla.serving.composed",
    "vizsla.serving.runtime",
    "vizsla.training.plots",
    "vizsla.training.report",
    "vizsla.tracking.mlflow_tracker",
    "vizsla.tracking.registry",
    "vizsla.tracking.pyfunc_model",
)


def main() -> None:
    path = Path(sys.argv[1])
    sys.path[:] = json.loads(sys.argv[2])
    listener = _bind(path)
    if listener is None:
        _say(f"another worker serves {path}: leaving")
        return
    inode = os.stat(path).st_ino
    pid_file = path.with_suffix(".pid")
    pid_file.write_text(f"{os.getpid()}\n")
    signal.signal(signal.SIGTERM, _stop)
    try:
        _preload_jobs()
        if _refused_for_cuda(path):
            return
        _serve(listener, path, inode)
    finally:
        if _still_ours(path, inode):  # a worker that replaced this one keeps its socket and pid file
            with contextlib.suppress(OSError):
                path.unlink()
            with contextlib.suppress(OSError):
                pid_file.unlink()
        _say("stopped")


def _bind(path: Path) -> socket.socket | None:
    """Listen on PATH; None when a live worker already does (two commands may start one at once)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
    except OSError:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
            return None
        except OSError:
            with contextlib.suppress(OSError):
                path.unlink()
            listener.bind(str(path))
        finally:
            probe.close()
    listener.listen(64)  # at once: a client that finds the socket refused takes it for a dead worker's
    os.chmod(path, 0o600)  # the folder is the user's alone already (identity.runtime_dir)
    return listener


def _import(names: tuple[str, ...]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a module that fails loads (and fails) in the job instead
            _say(f"could not preload {name}: {exc!r}")


def _preload_jobs() -> None:
    started = time.perf_counter()
    _import(JOB_MODULES)
    kept = _keep_default_backbone()
    _say(f"loaded what jobs start with in {time.perf_counter() - started:.1f} s "
         f"({threading.active_count()} Python thread(s){', the default backbone built' if kept else ''})")


def _preload_finishing() -> None:
    started = time.perf_counter()
    from vizsla.training import setup

    _import(FINISHING_MODULES + setup.LATE_IMPORTS)
    try:
        from vizsla.tracking import registry
        from vizsla.tracking.mlflow_tracker import preload_mlflow

        if preload_mlflow():  # only with telemetry off: its client may start threads, which a fork must not
            registry.preload_model_logging()
    except Exception as exc:  # noqa: BLE001 - the job's tracker imports it itself
        _say(f"could not preload MLflow: {exc!r}")
    _say(f"loaded what jobs end with in {time.perf_counter() - started:.1f} s "
         f"({threading.active_count()} Python thread(s))")


def _refused_for_cuda(path: Path) -> bool:
    """Whether preloading initialised CUDA, which a forked child cannot use: the commands of this worker's
    identity then run alone from now on (the client reads the marker)."""
    if not _cuda_initialized():
        return False
    reason = "CUDA was initialised while preloading, and a forked child cannot use it"
    path.with_suffix(".refused").write_text(reason + "\n")
    _say(f"{reason}: exiting")
    return True


def _cuda_initialized() -> bool:
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_initialized())
    except Exception:  # noqa: BLE001 - a torch without CUDA support
        return False


def _keep_default_backbone() -> bool:
    """Build the backbone of a job with default model and seed once, as the tuning worker's fork server
    does for its trials (models/templates.py): such a job's child takes it instead of building it (~0.3 s).
    On one intra-op thread: more would start OpenMP's threads, which a forked child does not get."""
    try:
        import torch

        from vizsla.models.templates import keep_backbone
        from vizsla.spec import ModelSpec, TrainSpec
        from vizsla.training.runtime import seed_everything
    except Exception:  # noqa: BLE001 - each job builds its backbone itself
        return False
    model, train = ModelSpec(), TrainSpec()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seed_everything(train.seed, deterministic=False)  # as the job seeds right before its build
        keep_backbone(model.name, model.weights, image_size=model.image_size)
    except Exception as exc:  # noqa: BLE001 - each job builds its backbone itself
        _say(f"could not build the default backbone: {exc!r}")
        return False
    finally:
        torch.set_num_threads(threads)
    return True


def _serve(listener: socket.socket, path: Path, inode: int) -> None:
    idle_s = identity.idle_seconds()
    finishing_loaded = False
    children: set[int] = set()
    last_work = time.monotonic()
    while True:
        # A command waiting since the start is forked first; the rest of the preload follows at once.
        listener.settimeout(1.0 if finishing_loaded else 0.1)
        children = {pid for pid in children if not _reaped(pid)}
        if children:
            last_work = time.monotonic()
        elif time.monotonic() - last_work > idle_s:
            _say(f"{idle_s:g} s without work: exiting")
            return
        if not _still_ours(path, inode):
            _say(f"{path} was removed or replaced: exiting")
            return
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if not finishing_loaded:
                _preload_finishing()
                finishing_loaded = True
                if _refused_for_cuda(path):
                    return
            continue
        if not _same_user(conn):
            conn.close()
            continue
        sys.stdout.flush()  # nothing of the worker's log may reach the child's terminal
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            listener.close()
            _run_command(conn)
        conn.close()
        children.add(pid)
        last_work = time.monotonic()
        _say(f"forked {pid}")


def _run_command(conn: socket.socket) -> NoReturn:
    """In the child: take over the client's streams, environment and folder, tell the pid, run, answer."""
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        conn.settimeout(30.0)
        request, fds = protocol.receive(conn, max_fds=3)
        conn.settimeout(None)
        if len(fds) != 3:
            os._exit(1)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(AttributeError, OSError, ValueError):
                stream.reconfigure(line_buffering=stream.isatty())
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        argv = [str(arg) for arg in request["argv"]]
        sys.argv = [str(request["argv0"]), *argv]
        from vizsla.cli import train

        train.started_at(float(request["started"]))
        protocol.send(conn, {"pid": os.getpid()})
    except BaseException:  # noqa: BLE001 - the client runs the command itself when no pid comes
        os._exit(1)
    threading.Thread(target=_die_with_client, args=(conn,), daemon=True).start()
    from vizsla.cli import app

    try:
        code = app.run(argv)
    except BaseException:  # noqa: BLE001 - what the interpreter would print for an uncaught exception
        traceback.print_exc()
        code = 1
    app.flush_outputs()
    with contextlib.suppress(OSError):
        protocol.send(conn, {"exit": code})
    os._exit(code)


def _die_with_client(conn: socket.socket) -> None:
    """The client went away (killed, terminal closed): a job of the command would have died with it."""
    with contextlib.suppress(OSError):
        while conn.recv(1):
            pass
    os.kill(os.getpid(), signal.SIGKILL)


def _reaped(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid


def _same_user(conn: socket.socket) -> bool:
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return False
    _, uid, _ = struct.unpack("3i", creds)
    return uid == os.getuid()


def _still_ours(path: Path, inode: int) -> bool:
    try:
        return os.stat(path).st_ino == inode
    except OSError:
        return False


def _stop(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _say(text: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [{os.getpid()}] {text}", flush=True)


if __name__ == "__main__":
    main()
