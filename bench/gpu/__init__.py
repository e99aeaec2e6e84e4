"""The GPU run (``bench/gpu/run.sh``) and its GPU-only checks."""
