"""`python -m vizsla.sagemaker._tuning_job`: run one tuning job from the JSON config on stdin.

`HyperparameterTuner.fit()` runs the tuning job in this separate process so that its trial processes
(forkserver/spawn children) never re-import the notebook: a notebook run as `python notebook.py` without an
`if __name__ == "__main__":` guard would otherwise be executed again in every trial process and stop with
multiprocessing's bootstrapping RuntimeError. Here `__main__` is this module, whose work is guarded.
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    from vizsla.errors import UserError
    from vizsla.tuning.job import run_tuning
    from vizsla.tuning.tune_spec import build_tune_spec

    config = json.loads(sys.stdin.read())
    try:
        spec = build_tune_spec(config, source=f"HyperparameterTuner {config.get('name')}")
        run_tuning(spec, progress=False)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
