"""Serve a trained classifier over SageMaker's and the Open Inference Protocol's wire contracts.

Modules: settings (every knob), runtime (ONNX Runtime / torch), composed (a head-only model as its job's
backbone export + the head in numpy), preprocess (the eval transform without torch), handler (model_fn,
input_fn, predict_fn, output_fn), batching (dynamic batches across requests), warmup (every batch size run
once at start), security (auth, SigV4, URL fetching), v2 (Open Inference Protocol), app (routes), server
(uvicorn), connections (slow-client bounds in uvicorn's HTTP protocol), export (`vizsla export`), client
(Predictor). Heavy imports live in those modules, so importing this package costs nothing; serving a
head-only model on ONNX Runtime never imports torch.
"""

from __future__ import annotations
