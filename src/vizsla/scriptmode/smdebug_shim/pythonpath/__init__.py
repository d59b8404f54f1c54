"""Put on script processes' PYTHONPATH by `shim_path()`: its only child package is `smdebug`."""
