import os
import signal

print("allocating a lot of memory", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
