"""Put on script processes' PYTHONPATH by `sagemaker_shim_path()`: its only child package is `sagemaker`."""
