"""Writes TRAIN step records where the smdebug shim would ($VIZSLA_PROFILE_DIR/steps.jsonl) while busy."""

import json
import os
import time

path = os.path.join(os.environ["VIZSLA_PROFILE_DIR"], "steps.jsonl")
with open(path, "a") as handle:
    for step in range(12):
        start = time.time()
        end = start + 0.08
        while time.time() < end:  # a busy step, so the system sampler sees CPU use
            sum(i * i for i in range(1000))
        handle.write(
            json.dumps(
                {
                    "step": step,
                    "epoch": 0,
                    "batch_index": step,
                    "batch_size": 32,
                    "time": start,
                    "data_s": 0.0,
                    "forward_s": 0.0,
                    "backward_s": 0.0,
                    "optimizer_s": 0.0,
                    "total_s": time.time() - start,
                }
            )
            + "\n"
        )
print("done")
