"""smdebug's hook API for script-mode child processes, writing into Vizsla's debugger store.

smdebug itself does not install or run on current PyTorch, NumPy and Python (protobuf 3.20 pins, a C
extension that no longer builds, `ndarray.tostring`), so script mode prepends `shim_path()` (this package's
`pythonpath/` folder) to the child's PYTHONPATH. That folder holds only a top-level `smdebug` package whose
modules re-export this package's hook and `vizsla.debugger.smdebug_compat`'s reader. In the main Vizsla
process the folder is not on sys.path, so an installed smdebug is never shadowed (there the package is only
`vizsla.scriptmode.smdebug_shim.pythonpath.smdebug`).
"""

from __future__ import annotations

from pathlib import Path


def shim_path() -> str:
    """Absolute path of the folder to prepend to a script process's PYTHONPATH (it contains `smdebug/`)."""
    return str(Path(__file__).resolve().parent / "pythonpath")
