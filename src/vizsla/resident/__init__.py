"""The resident worker: a process that keeps vizsla's heavy imports loaded and forks one child per job.

`vizsla train` spends ~5-7 s of a warm head-only job on imports alone on a 2-core machine (torch 1.2-2 s,
torch._dynamo through torchvision and torch.optim ~1.5 s, timm, MLflow and its SQL store 2-3 s, matplotlib),
against ~3 s of work. Build tools solved the same problem with a daemon (Gradle, Bazel, dmypy, Nailgun): the
first command starts one, later ones hand it their arguments. Here the daemon forks a child per command, so
each job still runs in a process of its own, with the user's environment, working directory, terminal
(its stdin/stdout/stderr are passed over the socket) and signals; only the imports are shared.

- identity: whether a command may use it, and the socket of the server that matches this interpreter,
  environment and code (a changed file, package or variable means another server).
- client: hand a command to the matching server, started first when none runs.
- server: preload, accept, fork a child per command, exit when idle.
- control: list and stop the workers (`vizsla workers`).

`VIZSLA_RESIDENT=0` turns it off; it exits by itself after `VIZSLA_RESIDENT_IDLE_S` seconds without work.
"""
