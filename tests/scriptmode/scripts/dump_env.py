"""Writes what the script sees (environment, argv, cwd) to $SM_OUTPUT_DATA_DIR/seen.json."""

import json
import os
import sys

seen = {"environ": dict(os.environ), "argv": sys.argv, "cwd": os.getcwd(), "executable": sys.executable}
with open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "seen.json"), "w") as handle:
    json.dump(seen, handle)
print("validation:accuracy=0.5;")
print("epoch 1 loss=abc", file=sys.stderr)
