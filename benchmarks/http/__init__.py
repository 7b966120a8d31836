"""HTTP sanity runs: the apps of benchmarks.apps under gunicorn and uvicorn, driven by wrk."""
