"""The serving app's routes, one module a protocol; create_app (serving/app.py) puts them together.

Modules: sagemaker (the container contract: /ping, /execution-parameters, /invocations; and the runtime
API's /endpoints/{name}/invocations with AWS-shaped errors), kserve_v2 (the Open Inference Protocol: /v2,
health, model metadata, infer), operations (/metrics, the page at /, /static), plumbing (the ServerState
dependency, reading an authorized body, mapping failures to each protocol's error body and counting them).
Each protocol module exports ROUTES, its routes in the order they match.
"""
