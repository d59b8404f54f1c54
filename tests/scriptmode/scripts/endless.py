"""Prints a loss line every 50 ms until stopped; saves a checkpoint on SIGTERM like a well-behaved script."""

import signal
import sys
import time


def on_term(signum, frame):
    print("SIGTERM: saving checkpoint", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)
step = 0
while True:
    print(f"step {step} loss={1.0 / (step + 1):.4f}", flush=True)
    step += 1
    time.sleep(0.05)
