"""Shared infrastructure below every feature package: I/O, collectives, hardware, ONNX, reports.

The one rule of this layer: it imports nothing of vizsla but `vizsla.errors` and other `vizsla.infra`
modules, so data, training, serving, tuning, profiler and debugger can all build on it without importing
each other. Heavy libraries (torch, onnxruntime, matplotlib, jinja2) are imported inside the functions
that use them, so `import vizsla.infra.io` stays as cheap as `import vizsla`.
"""
