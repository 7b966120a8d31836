"""The project's modules are run by uvicorn in a subprocess, configured by its
environment: not modules to import in the test session (doctest collection)."""

collect_ignore = ["settings.py", "asgi.py", "urls.py", "handlers.py"]
