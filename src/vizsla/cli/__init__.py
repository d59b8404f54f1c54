"""The `vizsla` command line."""
